import { describe, expect, it } from 'vitest';
import {
  call,
  DemonstrationError,
  planDemonstration,
  testsOfTouchedModules,
  uniqueReplacement,
} from '../../domain/demonstrator';
import { parseUnifiedDiff } from '../../domain/unifiedDiff';

const BASE = [
  'def a():',
  '    return 1',
  '',
  'def b():',
  '    return 1',
  '',
  'def c():',
  '    return 3',
  '',
].join('\n');
const PATCH = `diff --git a/pkg/mod.py b/pkg/mod.py
index 1111111..2222222 100644
--- a/pkg/mod.py
+++ b/pkg/mod.py
@@ -4,2 +4,2 @@ def a():
 def b():
-    return 1
+    return 2
diff --git a/pkg/new.py b/pkg/new.py
new file mode 100644
index 0000000..3333333
--- /dev/null
+++ b/pkg/new.py
@@ -0,0 +1,2 @@
+X = 1
+Y = 2
`;

describe('parseUnifiedDiff', () => {
  it('reads files, creations and hunks as old and new blocks', () => {
    const files = parseUnifiedDiff(PATCH);
    expect(files).toEqual([
      {
        oldPath: 'pkg/mod.py',
        newPath: 'pkg/mod.py',
        binary: false,
        hunks: [
          { oldStart: 4, oldLines: ['def b():', '    return 1'], newLines: ['def b():', '    return 2'] },
        ],
      },
      {
        oldPath: null,
        newPath: 'pkg/new.py',
        binary: false,
        hunks: [{ oldStart: 0, oldLines: [], newLines: ['X = 1', 'Y = 2'] }],
      },
    ]);
  });

  it('reads deletions, binary changes and "no newline" markers', () => {
    const files = parseUnifiedDiff(
      'diff --git a/old.py b/old.py\ndeleted file mode 100644\n--- a/old.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n\\ No newline at end of file\n' +
        'diff --git a/img.png b/img.png\nBinary files a/img.png and b/img.png differ\n',
    );
    expect(files[0]).toMatchObject({
      oldPath: 'old.py',
      newPath: null,
      hunks: [{ oldLines: ['x'], newLines: [] }],
    });
    expect(files[1]).toMatchObject({ binary: true, hunks: [] });
  });
});

describe('uniqueReplacement', () => {
  it('grows the context by whole lines on both sides until the old block occurs once', () => {
    // "    return 1" occurs twice: one line of context above makes it unique.
    expect(uniqueReplacement(BASE, ['    return 1'], ['    return 2'], 'f')).toEqual({
      oldStr: 'def a():\n    return 1\n',
      newStr: 'def a():\n    return 2\n',
    });
  });

  it('refuses a hunk that does not match the file', () => {
    expect(() => uniqueReplacement(BASE, ['nope'], ['x'], 'f')).toThrow(DemonstrationError);
  });
});

describe('planDemonstration', () => {
  const plan = planDemonstration({
    patch: PATCH,
    repoPath: '/repo',
    baseFiles: { 'pkg/mod.py': BASE },
    repoFiles: ['pkg/mod.py', 'tests/test_mod.py', 'tests/test_other.py', 'docs/mod.md'],
  });

  it('views, edits hunk by hunk, creates new files, runs the touched tests and finishes', () => {
    expect(plan).toHaveLength(5);
    expect(plan[0]).toContain(
      call('file_editor', { command: 'view', path: '/repo/pkg/mod.py', view_range: '[1, 9]' }),
    );
    expect(plan[1]).toContain(
      call('file_editor', {
        command: 'str_replace',
        path: '/repo/pkg/mod.py',
        old_str: 'def b():\n    return 1',
        new_str: 'def b():\n    return 2',
      }),
    );
    expect(plan[2]).toContain(
      call('file_editor', { command: 'create', path: '/repo/pkg/new.py', file_text: 'X = 1\nY = 2\n' }),
    );
    expect(plan[3]).toContain('python -m pytest -q -p no:cacheprovider tests/test_mod.py');
    expect(plan[4]).toContain('<function=finish>');
    // Every reply has a thought before its one call, as the scaffold asks.
    for (const reply of plan) {
      expect(reply.indexOf('<function=')).toBeGreaterThan(0);
      expect(reply.match(/<function=/g)).toHaveLength(1);
    }
  });

  it('refuses what the editor cannot express', () => {
    expect(() => planDemonstration({ patch: '', repoPath: '/r', baseFiles: {}, repoFiles: [] })).toThrow(
      /changes no file/,
    );
    expect(() =>
      planDemonstration({
        patch: PATCH.split('diff --git a/pkg/new.py')[0]!,
        repoPath: '/r',
        baseFiles: {},
        repoFiles: [],
      }),
    ).toThrow(/no base content given for pkg\/mod.py/);
  });
});

describe('testsOfTouchedModules', () => {
  it('names test files after the changed module, or its package for __init__.py', () => {
    const diffs = parseUnifiedDiff(
      'diff --git a/inflection/__init__.py b/inflection/__init__.py\n--- a/inflection/__init__.py\n+++ b/inflection/__init__.py\n',
    );
    expect(
      testsOfTouchedModules(diffs, ['test_inflection.py', 'inflection/__init__.py', 'test_other.py']),
    ).toEqual(['test_inflection.py']);
  });
});
