/**
 * What a patch may not change for its grading to count: the test machinery. Grading restores every file a
 * patch changed that {@link isTestMachineryPath} names to the base commit before the test patch and the
 * tests run, and flags added lines elsewhere that reach into the test runner ({@link findRunnerHooks}).
 * No list catches everything (a patch can still special-case the tested inputs); the README says what is
 * and is not covered.
 */

/** Files pytest (or Python at startup) reads to configure or extend a test run, wherever they sit. */
export const TEST_CONFIG_FILE_NAMES: readonly string[] = [
  'conftest.py',
  'pytest.ini',
  'tox.ini',
  'setup.cfg',
  'pyproject.toml',
  'sitecustomize.py',
  'usercustomize.py',
];

/** A file under a directory of one of these names is a test file. */
export const TEST_DIRECTORY_NAMES: readonly string[] = ['test', 'tests', 'testing'];

/** Test machinery: a config file above, a `.pth` file, or a test file (`test_*.py`, `*_test.py`, under test/, tests/ or testing/). */
export function isTestMachineryPath(file: string): boolean {
  const parts = file.split('/').filter((p) => p !== '' && p !== '.');
  const name = parts.at(-1);
  if (name === undefined) return false;
  if (TEST_CONFIG_FILE_NAMES.includes(name) || name.endsWith('.pth')) return true;
  if (/^test_.*\.py$/.test(name) || /.+_test\.py$/.test(name)) return true;
  return parts.slice(0, -1).some((dir) => TEST_DIRECTORY_NAMES.includes(dir));
}

/**
 * Files a patch changed: tracked files that differ from the base commit, files that were not there
 * (untracked or ignored) before the patch was applied, and the files the applied patch names (which covers
 * an edit to a file that was already there untracked, such as a `.pth` file in an ignored virtualenv).
 */
export function changedByPatch(
  trackedChanged: readonly string[],
  untrackedBefore: readonly string[],
  untrackedAfter: readonly string[],
  namedInPatch: readonly string[] = [],
): string[] {
  const before = new Set(untrackedBefore);
  const changed = new Set([...trackedChanged, ...namedInPatch]);
  for (const file of untrackedAfter) if (!before.has(file)) changed.add(file);
  return [...changed].sort();
}

/** The files a unified diff writes (`+++` targets, `-p1`), deletions included (by their `---` name). */
export function filesNamedInPatch(patch: string): string[] {
  const files = new Set<string>();
  for (const line of patch.split('\n')) {
    if (!line.startsWith('+++ ') && !line.startsWith('--- ')) continue;
    const file = patchedPath(line.slice(4).replace(/\r$/, ''));
    if (file !== null && file !== '') files.add(file);
  }
  return [...files].sort();
}

/** A rule for added lines that reach into the test runner from outside the test machinery. */
export interface RunnerHookRule {
  name: string;
  pattern: RegExp;
}

export const RUNNER_HOOK_RULES: readonly RunnerHookRule[] = [
  { name: 'uses pytest internals (_pytest)', pattern: /\b_pytest\b/ },
  { name: 'defines or names a pytest hook (pytest_*)', pattern: /\bpytest_[A-Za-z]\w*/ },
  { name: 'registers a pytest plugin entry point (pytest11)', pattern: /\bpytest11\b/ },
  { name: "sets pytest's environment (PYTEST_*)", pattern: /\bPYTEST_[A-Z_]+\b/ },
  {
    name: 'rewrites test reports or outcomes',
    pattern: /\b(?:TestReport|CollectReport|CallInfo)\b|\boutcome\s*=\s*['"](?:passed|skipped)['"]/,
  },
  {
    name: 'replaces a test framework module in sys.modules',
    pattern: /\bsys\.modules\s*\[\s*['"](?:_?pytest|unittest)\b/,
  },
  {
    name: 'monkeypatches pytest or unittest',
    pattern:
      /\b(?:pytest|unittest)(?:\.\w+)+\s*=(?!=)|\bsetattr\(\s*(?:pytest|unittest|_pytest)\b|\b(?:TestCase|TestResult|TextTestResult|TextTestRunner|TestProgram|TestLoader|TestSuite)\.\w+\s*=(?!=)/,
  },
];

/** An added line that a {@link RunnerHookRule} matched. */
export interface RunnerHookFlag {
  file: string;
  /** Line number in the patched file. */
  line: number;
  rule: string;
  /** The added line, cut to 200 characters. */
  text: string;
}

/** Lines a unified diff adds, with the file (as patched, `-p1`) and line number each lands on. */
export function addedLines(patch: string): { file: string; line: number; text: string }[] {
  const added: { file: string; line: number; text: string }[] = [];
  const lines = patch.split('\n');
  let file: string | null = null;
  let newLine = 0;
  let oldLeft = 0;
  let newLeft = 0;
  for (const raw of lines) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (oldLeft > 0 || newLeft > 0) {
      // Inside a hunk: its header's counts say where it ends, so a `+++`/`---` line here is content.
      if (line.startsWith('+')) {
        if (file !== null) added.push({ file, line: newLine, text: line.slice(1) });
        newLine++;
        newLeft--;
      } else if (line.startsWith('-')) {
        oldLeft--;
      } else if (line.startsWith('\\')) {
        // "\ No newline at end of file"
      } else {
        newLine++;
        oldLeft--;
        newLeft--;
      }
      continue;
    }
    if (line.startsWith('+++ ')) {
      file = patchedPath(line.slice(4));
      continue;
    }
    const hunk = /^@@ -\d+(?:,(\d+))? \+(\d+)(?:,(\d+))? @@/.exec(line);
    if (hunk) {
      oldLeft = hunk[1] === undefined ? 1 : Number(hunk[1]);
      newLine = Number(hunk[2]);
      newLeft = hunk[3] === undefined ? 1 : Number(hunk[3]);
    }
  }
  return added;
}

/** `b/pkg/x.py` → `pkg/x.py`; `/dev/null` → null (a deletion adds nothing). Quoted names are unquoted. */
function patchedPath(spec: string): string | null {
  let name = spec.split('\t')[0]!.trim();
  if (name.startsWith('"') && name.endsWith('"')) {
    try {
      name = JSON.parse(name) as string;
    } catch {
      name = name.slice(1, -1);
    }
  }
  if (name === '/dev/null') return null;
  const slash = name.indexOf('/');
  return slash >= 0 ? name.slice(slash + 1) : name;
}

/**
 * Added lines that match a {@link RUNNER_HOOK_RULES} rule, outside the test machinery (which grading
 * reverts, so it never reaches the run); the first rule that matches names the flag.
 */
export function findRunnerHooks(patch: string): RunnerHookFlag[] {
  const flags: RunnerHookFlag[] = [];
  for (const { file, line, text } of addedLines(patch)) {
    if (isTestMachineryPath(file)) continue;
    const rule = RUNNER_HOOK_RULES.find((r) => r.pattern.test(text));
    if (rule) flags.push({ file, line, rule: rule.name, text: text.trim().slice(0, 200) });
  }
  return flags;
}
