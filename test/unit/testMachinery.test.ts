import { describe, expect, it } from 'vitest';
import {
  addedLines,
  changedByPatch,
  filesNamedInPatch,
  findRunnerHooks,
  isTestMachineryPath,
} from '../../domain/testMachinery';

describe('isTestMachineryPath', () => {
  it('names config files, .pth files and test files at any depth', () => {
    for (const file of [
      'conftest.py',
      'src/pkg/conftest.py',
      'pytest.ini',
      'tox.ini',
      'setup.cfg',
      'pyproject.toml',
      'sub/pyproject.toml',
      'sitecustomize.py',
      'lib/usercustomize.py',
      'evil.pth',
      'src/x/hook.pth',
      'test_inflection.py',
      'pkg/test_core.py',
      'pkg/core_test.py',
      'tests/helpers.py',
      'src/pkg/tests/data/input.txt',
      'test/util.py',
      'pkg/testing/fixtures.py',
      './tests/x.py',
    ]) {
      expect(isTestMachineryPath(file), file).toBe(true);
    }
  });

  it('leaves the package code alone', () => {
    for (const file of [
      'inflection/__init__.py',
      'src/isodate/duration.py',
      'setup.py',
      'README.rst',
      'pkg/testutils.py',
      'pkg/contest.py',
      'pkg/_test.py',
      'tests.py',
      'pkg/latest/x.py',
      'mytests/x.py',
      'pth.py',
      'Conftest.py',
    ]) {
      expect(isTestMachineryPath(file), file).toBe(false);
    }
  });
});

describe('changedByPatch', () => {
  it('is tracked changes plus files that were not there before, each once', () => {
    expect(
      changedByPatch(
        ['a.py', 'conftest.py'],
        ['build/x.o', 'pkg.egg-info/PKG-INFO'],
        ['build/x.o', 'pkg.egg-info/PKG-INFO', 'new.pth', 'conftest.py'],
      ),
    ).toEqual(['a.py', 'conftest.py', 'new.pth']);
    expect(changedByPatch([], ['x'], ['x'])).toEqual([]);
    // An edit to a file that was already there untracked shows only in the patch itself.
    expect(changedByPatch([], ['.venv/site.pth'], ['.venv/site.pth'], ['.venv/site.pth'])).toEqual([
      '.venv/site.pth',
    ]);
  });

  it('reads the files a patch writes from its headers, deletions and renames included', () => {
    const patch = [
      'diff --git a/old.py b/tests/new.py',
      'rename from old.py',
      'rename to tests/new.py',
      '--- a/old.py',
      '+++ b/tests/new.py',
      '@@ -1 +1 @@',
      '-a',
      '+b',
      '--- a/gone.pth',
      '+++ /dev/null',
      '@@ -1 +0,0 @@',
      '-import x',
      '--- /dev/null',
      '+++ "b/with space/conftest.py"',
      '@@ -0,0 +1 @@',
      '+x = 1',
    ].join('\n');
    expect(filesNamedInPatch(patch)).toEqual([
      'gone.pth',
      'old.py',
      'tests/new.py',
      'with space/conftest.py',
    ]);
  });
});

const HOOK_IN_INIT = `diff --git a/inflection/__init__.py b/inflection/__init__.py
index 0d027fb..c18a0b6 100644
--- a/inflection/__init__.py
+++ b/inflection/__init__.py
@@ -10,3 +10,7 @@ import re
 
 __version__ = '0.5.1'
 
+import _pytest.reports as _reports
+x = 1
++++ counted as content, not a header
+unittest.TestCase.run = lambda self, result=None: None
`;

describe('addedLines', () => {
  it('gives each added line its file and line number, reading hunk lengths rather than guessing', () => {
    expect(addedLines(HOOK_IN_INIT)).toEqual([
      { file: 'inflection/__init__.py', line: 13, text: 'import _pytest.reports as _reports' },
      { file: 'inflection/__init__.py', line: 14, text: 'x = 1' },
      { file: 'inflection/__init__.py', line: 15, text: '+++ counted as content, not a header' },
      {
        file: 'inflection/__init__.py',
        line: 16,
        text: 'unittest.TestCase.run = lambda self, result=None: None',
      },
    ]);
  });

  it('reads new files, several files, one-line hunks and plain (non-git) diffs', () => {
    const patch = [
      'diff --git a/conftest.py b/conftest.py',
      'new file mode 100644',
      '--- /dev/null',
      '+++ b/conftest.py',
      '@@ -0,0 +1,2 @@',
      '+import pytest',
      '+def pytest_runtest_makereport(item, call): pass',
      '--- pkg/a.py\t2020-01-01',
      '+++ pkg/a.py\t2020-01-01',
      '@@ -5 +5 @@',
      '-old',
      '+new',
      'diff --git a/gone.py b/gone.py',
      'deleted file mode 100644',
      '--- a/gone.py',
      '+++ /dev/null',
      '@@ -1 +0,0 @@',
      '-bye',
    ].join('\n');
    expect(addedLines(patch)).toEqual([
      { file: 'conftest.py', line: 1, text: 'import pytest' },
      { file: 'conftest.py', line: 2, text: 'def pytest_runtest_makereport(item, call): pass' },
      { file: 'a.py', line: 5, text: 'new' },
    ]);
  });
});

describe('findRunnerHooks', () => {
  it('flags added lines that reach into the test runner, outside the test machinery', () => {
    expect(findRunnerHooks(HOOK_IN_INIT)).toEqual([
      {
        file: 'inflection/__init__.py',
        line: 13,
        rule: 'uses pytest internals (_pytest)',
        text: 'import _pytest.reports as _reports',
      },
      {
        file: 'inflection/__init__.py',
        line: 16,
        rule: 'monkeypatches pytest or unittest',
        text: 'unittest.TestCase.run = lambda self, result=None: None',
      },
    ]);
  });

  it('knows each rule by an example, and passes ordinary code', () => {
    const flagged = (line: string) =>
      findRunnerHooks(`--- a/pkg/m.py\n+++ b/pkg/m.py\n@@ -1,0 +1,1 @@\n+${line}\n`).map((f) => f.rule);
    expect(flagged('def pytest_configure(config):')).toEqual(['defines or names a pytest hook (pytest_*)']);
    expect(flagged('pytest_plugins = ["pkg.plugin"]')).toEqual(['defines or names a pytest hook (pytest_*)']);
    expect(flagged('    pytest11 = pkg.plugin')).toEqual([
      'registers a pytest plugin entry point (pytest11)',
    ]);
    expect(flagged('os.environ["PYTEST_ADDOPTS"] = "-p pkg.plugin"')).toEqual([
      "sets pytest's environment (PYTEST_*)",
    ]);
    expect(flagged('sys.modules["pytest"] = fake')).toEqual([
      'replaces a test framework module in sys.modules',
    ]);
    expect(flagged('    report.outcome = "passed"')).toEqual(['rewrites test reports or outcomes']);
    expect(flagged('orig = TestReport.from_item_and_call')).toEqual(['rewrites test reports or outcomes']);
    expect(flagged('pytest.fail = lambda *a, **k: None')).toEqual(['monkeypatches pytest or unittest']);
    expect(flagged("setattr(unittest, 'main', main)")).toEqual(['monkeypatches pytest or unittest']);
    expect(flagged('TestResult.addFailure = TestResult.addSuccess')).toEqual([
      'monkeypatches pytest or unittest',
    ]);
    for (const ordinary of [
      'return word.replace("_", "-")',
      'if unittest_like == 3:',
      'import unittest.mock',
      'my_pytest = 1',
      'if result == pytest.approx(1):',
    ]) {
      expect(flagged(ordinary), ordinary).toEqual([]);
    }
    // Test machinery is reverted, not flagged: its hooks never reach the run.
    expect(
      findRunnerHooks(
        '--- /dev/null\n+++ b/conftest.py\n@@ -0,0 +1 @@\n+def pytest_runtest_makereport(): pass\n',
      ),
    ).toEqual([]);
  });
});
