import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  directoryListing,
  directoryListingCommand,
  editorTarget,
  type PathState,
  runFileEditor,
} from '../../../domain/agent/fileEditor';
import type { FileEditorAction } from '../../../domain/agent/toolActions';
import type { UndoHistory } from '../../../domain/agent/undoHistory';

const ROOT = '/testbed';
const options = { repoRoot: ROOT };
const file = (content: string): PathState => ({ kind: 'file', content });

/** Runs one action on a path whose state is given; returns the observation outcome. */
function run(action: FileEditorAction, target: PathState, history: UndoHistory = {}, maxViewChars?: number) {
  const resolved = editorTarget(action, ROOT);
  if (!resolved.ok) throw new Error(resolved.observation);
  const out = runFileEditor(action, resolved.path, target, history, { ...options, maxViewChars });
  if (out.kind !== 'observation') throw new Error(`expected an observation, got ${out.kind}`);
  return out;
}
const view = (p: string, extra: Partial<Extract<FileEditorAction, { command: 'view' }>> = {}) =>
  ({ tool: 'file_editor', command: 'view', path: p, concise: false, ...extra }) as const;
const replace = (oldStr: string, newStr: string) =>
  ({ tool: 'file_editor', command: 'str_replace', path: 'a.py', oldStr, newStr }) as const;
const insert = (insertLine: number, newStr: string) =>
  ({ tool: 'file_editor', command: 'insert', path: 'a.py', insertLine, newStr }) as const;
const undoA = { tool: 'file_editor', command: 'undo_edit', path: 'a.py' } as const;

const TEN = `${Array.from({ length: 10 }, (_, i) => `line${i + 1}`).join('\n')}\n`;

describe('file_editor view', () => {
  it('numbers lines like cat -n', () => {
    expect(run(view('/testbed/a.py'), file('x = 1\n\ty = 2\n')).observation).toBe(
      "Here's the result of running `cat -n` on /testbed/a.py:\n     1\tx = 1\n     2\t\ty = 2",
    );
  });

  it('view_range, to the end with -1, and past the end', () => {
    expect(run(view('a.py', { viewRange: [9, -1] }), file(TEN)).observation).toBe(
      "Here's the result of running `cat -n` on /testbed/a.py, lines 9-10:\n     9\tline9\n    10\tline10",
    );
    expect(run(view('a.py', { viewRange: [10, 12] }), file(TEN)).observation).toBe(
      "Here's the result of running `cat -n` on /testbed/a.py, lines 10-10 (the file has only 10 lines):\n    10\tline10",
    );
    expect(run(view('a.py', { viewRange: [11, 12] }), file(TEN)).observation).toBe(
      'view_range starts at line 11, but /testbed/a.py has only 10 lines.',
    );
  });

  it('clips long files', () => {
    const long = Array.from({ length: 5000 }, (_, i) => `print(${i})`).join('\n');
    const out = run(view('a.py'), file(long), {}, 10_000).observation;
    expect(out.length).toBeLessThan(10_200);
    expect(out).toContain('<response clipped><NOTE>Only the first');
  });

  it('a missing path, an empty file, a binary file', () => {
    expect(run(view('nope.py'), { kind: 'missing' }).observation).toBe(
      'The path /testbed/nope.py does not exist.',
    );
    expect(run(view('a.py'), file('')).observation).toBe('/testbed/a.py is empty.');
    expect(run(view('a.bin'), file('\x7fELF\0\0')).observation).toBe(
      '/testbed/a.bin is a binary file; the file editor shows and edits text files only.',
    );
  });

  it('concise elides Python function bodies; other files are shown whole', () => {
    const py = 'import os\n\ndef f(x):\n    a = 1\n    b = 2\n    return a + b\n\nX = 1\n';
    expect(run(view('a.py', { concise: true }), file(py)).observation).toBe(
      [
        'Here is a concise view of /testbed/a.py: function bodies longer than 2 lines are elided; view them with view_range.',
        '     1\timport os',
        '     2\t',
        '     3\tdef f(x):',
        '      \t    ... lines 4-6 elided ...',
        '     7\t',
        '     8\tX = 1',
      ].join('\n'),
    );
    expect(run(view('a.txt', { concise: true }), file('a\n')).observation).toContain(
      '(concise views are for Python files; this is the whole file)',
    );
  });

  it('a directory is listed by a command; view_range on it is refused', () => {
    const dir = runFileEditor(
      view('src'),
      { relative: 'src', absolute: '/testbed/src' },
      { kind: 'directory' },
      {},
      options,
    );
    expect(dir).toEqual({ kind: 'list_directory', command: directoryListingCommand('src') });
    expect(run(view('src', { viewRange: [1, 2] }), { kind: 'directory' }).observation).toBe(
      'view_range cannot be used with a directory (/testbed/src).',
    );
  });
});

describe('file_editor directory listing (run by real find)', () => {
  it('lists non-hidden entries two levels deep, directories marked, as absolute paths', () => {
    const repo = fs.mkdtempSync(path.join(os.tmpdir(), 'entropo-listing-'));
    for (const f of [
      'a.py',
      'pkg/b.py',
      'pkg/sub/c.py',
      'pkg/sub/deep/d.py',
      '.git/config',
      'pkg/.hidden.py',
    ]) {
      fs.mkdirSync(path.dirname(path.join(repo, f)), { recursive: true });
      fs.writeFileSync(path.join(repo, f), '');
    }
    const listing = (relative: string) => {
      const stdout = execFileSync('bash', ['-c', directoryListingCommand(relative)], {
        cwd: repo,
      }).toString();
      const result = {
        exitCode: 0,
        stdout,
        stderr: '',
        timedOut: false,
        stdoutCutBytes: 0,
        stderrCutBytes: 0,
      };
      return directoryListing(relative, result, options);
    };
    expect(listing('.')).toBe(
      [
        'Here are the files and directories up to 2 levels deep in /testbed, excluding hidden items:',
        '/testbed/',
        '/testbed/a.py',
        '/testbed/pkg/',
        '/testbed/pkg/b.py',
        '/testbed/pkg/sub/',
      ].join('\n'),
    );
    expect(listing('pkg')).toContain('/testbed/pkg/sub/\n/testbed/pkg/sub/c.py\n/testbed/pkg/sub/deep/');
    fs.rmSync(repo, { recursive: true });
  });
});

describe('file_editor create', () => {
  it('creates a missing file and records that it did not exist', () => {
    const out = run(
      { tool: 'file_editor', command: 'create', path: 'new/x.py', fileText: 'x = 1\n' },
      { kind: 'missing' },
    );
    expect(out).toEqual({
      kind: 'observation',
      observation: 'File created successfully at /testbed/new/x.py.',
      history: { 'new/x.py': [null] },
      change: { path: 'new/x.py', content: 'x = 1\n' },
    });
  });

  it('refuses an existing file or directory', () => {
    const create = { tool: 'file_editor', command: 'create', path: 'a.py', fileText: '' } as const;
    const out = run(create, file('old'));
    expect(out.observation).toBe(
      'A file already exists at /testbed/a.py; create does not overwrite. Use str_replace or insert to edit it.',
    );
    expect(out.change).toBeUndefined();
    expect(out.history).toEqual({});
    expect(run(create, { kind: 'directory' }).observation).toMatch(/^A directory already exists/);
  });
});

describe('file_editor str_replace', () => {
  it('replaces the one occurrence and shows a numbered snippet around it', () => {
    const out = run(replace('line5\n', 'five\nFIVE\n'), file(TEN));
    expect(out.change).toEqual({ path: 'a.py', content: TEN.replace('line5\n', 'five\nFIVE\n') });
    expect(out.history).toEqual({ 'a.py': [TEN] });
    expect(out.observation).toBe(
      [
        "The file /testbed/a.py has been edited. Here's the result of running `cat -n` on a snippet of it:",
        '     1\tline1',
        '     2\tline2',
        '     3\tline3',
        '     4\tline4',
        '     5\tfive',
        '     6\tFIVE',
        '     7\tline6',
        '     8\tline7',
        '     9\tline8',
        '    10\tline9',
        '    11\tline10',
        'Review the change and make sure it is as expected; edit the file again if necessary.',
      ].join('\n'),
    );
  });

  it('no occurrence: nothing changes', () => {
    const out = run(replace('  line5', 'x'), file(TEN));
    expect(out.observation).toBe(
      'No replacement was made: old_str does not occur verbatim in /testbed/a.py. Check whitespace and indentation, e.g. with view and a view_range.',
    );
    expect(out.change).toBeUndefined();
  });

  it('several occurrences: names the lines they start on', () => {
    const out = run(replace('line1', 'x'), file(TEN));
    expect(out.observation).toBe(
      'No replacement was made: old_str occurs 2 times in /testbed/a.py, starting on lines 1, 10. Include more surrounding lines in old_str so that it occurs exactly once.',
    );
    expect(out.change).toBeUndefined();
  });

  it('overlapping occurrences count as several', () => {
    expect(run(replace('aa', 'b'), file('aaa\n')).observation).toContain('occurs 2 times');
  });

  it('on a missing file or a directory', () => {
    expect(run(replace('a', 'b'), { kind: 'missing' }).observation).toBe(
      'The path /testbed/a.py does not exist.',
    );
    expect(run(replace('a', 'b'), { kind: 'directory' }).observation).toBe(
      '/testbed/a.py is a directory; str_replace works on files only.',
    );
  });
});

describe('file_editor insert', () => {
  it('inserts after the given line, 0 at the top and N at the end', () => {
    expect(run(insert(2, 'new'), file('a\nb\nc\n')).change).toEqual({
      path: 'a.py',
      content: 'a\nb\nnew\nc\n',
    });
    expect(run(insert(0, 'new\n'), file('a\nb\n')).change).toEqual({ path: 'a.py', content: 'new\na\nb\n' });
    expect(run(insert(2, 'x\ny'), file('a\nb\n')).change).toEqual({ path: 'a.py', content: 'a\nb\nx\ny\n' });
    expect(run(insert(0, 'x'), file('')).change).toEqual({ path: 'a.py', content: 'x\n' });
    expect(run(insert(1, 'x'), file('a')).change).toEqual({ path: 'a.py', content: 'a\nx' });
  });

  it('shows the inserted lines numbered', () => {
    expect(run(insert(1, 'new'), file('a\nb\n')).observation).toContain(
      '     1\ta\n     2\tnew\n     3\tb\n',
    );
  });

  it('refuses a line past the end', () => {
    const out = run(insert(4, 'x'), file('a\nb\nc\n'));
    expect(out.observation).toBe(
      'insert_line 4 is past the end of /testbed/a.py, which has 3 lines: use a number from 0 (the top) to 3 (the end).',
    );
    expect(out.change).toBeUndefined();
  });
});

describe('file_editor undo_edit', () => {
  it('undoes edits one by one, back to before the file existed', () => {
    const created = run(
      { tool: 'file_editor', command: 'create', path: 'a.py', fileText: 'v1\n' },
      { kind: 'missing' },
    );
    const edited = run(replace('v1', 'v2'), file('v1\n'), created.history);
    // The history survives a round trip through JSON, as a checkpoint stores it.
    const restored = JSON.parse(JSON.stringify(edited.history)) as UndoHistory;
    const first = run(undoA, file('v2\n'), restored);
    expect(first.change).toEqual({ path: 'a.py', content: 'v1\n' });
    expect(first.observation).toBe(
      "Last edit of /testbed/a.py undone. Here's the result of running `cat -n` on it:\n     1\tv1",
    );
    const second = run(undoA, file('v1\n'), first.history);
    expect(second.change).toEqual({ path: 'a.py', remove: true });
    expect(second.history).toEqual({});
    expect(run(undoA, { kind: 'missing' }, second.history).observation).toBe(
      'There is no edit of /testbed/a.py to undo.',
    );
  });

  it('keeps other paths', () => {
    const history = { 'a.py': ['old\n'], 'b.py': ['x'] };
    expect(run(undoA, file('new\n'), history).history).toEqual({ 'b.py': ['x'] });
  });
});

describe('editorTarget', () => {
  it('refuses a path outside the repository', () => {
    expect(editorTarget(view('/etc/passwd'), ROOT)).toEqual({
      ok: false,
      observation:
        'The path /etc/passwd is outside the repository. Use a path under /testbed or relative to it.',
    });
  });
});
