import { type FileDiff, parseUnifiedDiff } from './unifiedDiff';

/**
 * The gold-patch demonstrator: a teacher for machines without a strong model. It turns a training task's
 * gold patch into the replies an agent would write — view each file around the change, one `str_replace`
 * per hunk (a `create` for a new file), run the repository's own tests of the touched modules, `finish` —
 * so its trajectory goes through the real parser and tools like any model's. It reads gold patches, so it
 * may only ever work on a training split (the caller checks the suite's manifest).
 */

export interface DemonstrationInput {
  /** The gold patch (unified diff, as in SWE-bench's `patch`). */
  patch: string;
  /** Where the repository lives as the agent sees it (paths in tool calls are absolute, as R2E's are). */
  repoPath: string;
  /** The contents at the base commit of every file the patch modifies, by repository-relative path. */
  baseFiles: Readonly<Record<string, string>>;
  /** The repository's tracked files (`git ls-files`), to find the tests of the touched modules. */
  repoFiles: readonly string[];
}

export class DemonstrationError extends Error {
  override name = 'DemonstrationError';
}

/** The demonstrator's replies, in order; the last one calls `finish`. */
export function planDemonstration(input: DemonstrationInput): string[] {
  const diffs = parseUnifiedDiff(input.patch);
  if (diffs.length === 0) throw new DemonstrationError('the gold patch changes no file');
  const replies: string[] = [];
  for (const diff of diffs) replies.push(...repliesForFile(diff, input));
  const tests = testsOfTouchedModules(diffs, input.repoFiles);
  const command = `python -m pytest -q -p no:cacheprovider${tests.length > 0 ? ` ${tests.join(' ')}` : ''}`;
  replies.push(
    `${tests.length > 0 ? 'Now I run the tests of the modules I changed' : 'Now I run the test suite'} to check the fix and that nothing else broke.\n` +
      call('execute_bash', { cmd: command }),
  );
  replies.push(
    `The change is in place and the tests pass, so I submit it.\n${call('finish', { command: 'submit' })}`,
  );
  return replies;
}

function repliesForFile(diff: FileDiff, input: DemonstrationInput): string[] {
  if (diff.binary)
    throw new DemonstrationError(`the gold patch changes a binary file (${diff.newPath ?? diff.oldPath})`);
  if (diff.newPath === null) {
    return [
      `The file ${diff.oldPath} is no longer needed.\n${call('execute_bash', { cmd: `git rm -q -- ${shellQuote(diff.oldPath!)}` })}`,
    ];
  }
  const absolute = `${input.repoPath}/${diff.newPath}`;
  if (diff.oldPath === null) {
    const text = diff.hunks.flatMap((h) => h.newLines).join('\n');
    return [
      `I add the new file ${diff.newPath}.\n${call('file_editor', { command: 'create', path: absolute, file_text: `${text}\n` })}`,
    ];
  }
  if (diff.oldPath !== diff.newPath) {
    throw new DemonstrationError(
      `the gold patch renames ${diff.oldPath} to ${diff.newPath}, which the editor cannot do`,
    );
  }
  let content = input.baseFiles[diff.newPath];
  if (content === undefined) throw new DemonstrationError(`no base content given for ${diff.newPath}`);
  const replies: string[] = [];
  const first = diff.hunks[0]!.oldStart;
  const last = diff.hunks.at(-1)!;
  const lineCount = content.split('\n').length;
  const from = Math.max(1, first - 10);
  const to = Math.min(lineCount, last.oldStart + last.oldLines.length + 10);
  replies.push(
    `Let me look at ${diff.newPath} where the problem is.\n` +
      call('file_editor', { command: 'view', path: absolute, view_range: `[${from}, ${to}]` }),
  );
  for (const hunk of diff.hunks) {
    const { oldStr, newStr } = uniqueReplacement(content, hunk.oldLines, hunk.newLines, diff.newPath);
    replies.push(
      `I fix this part of ${diff.newPath}.\n` +
        call('file_editor', { command: 'str_replace', path: absolute, old_str: oldStr, new_str: newStr }),
    );
    content = content.replace(oldStr, () => newStr);
  }
  return replies;
}

/**
 * The hunk's old and new blocks, grown by whole lines of surrounding context until the old block occurs
 * exactly once in the file (as `str_replace` requires).
 */
export function uniqueReplacement(
  content: string,
  oldLines: readonly string[],
  newLines: readonly string[],
  file: string,
): { oldStr: string; newStr: string } {
  const lines = content.split('\n');
  const oldBlock = oldLines.join('\n');
  const at = findLineBlock(lines, oldLines);
  if (at < 0) throw new DemonstrationError(`a hunk of ${file} does not match the base content`);
  for (let grow = 0; ; grow++) {
    const before = lines.slice(Math.max(0, at - grow), at);
    const after = lines.slice(at + oldLines.length, at + oldLines.length + grow);
    const oldStr = [...before, oldBlock, ...after].join('\n');
    if (occurrences(content, oldStr) === 1) {
      return { oldStr, newStr: [...before, ...newLines, ...after].join('\n') };
    }
    if (at - grow <= 0 && at + oldLines.length + grow >= lines.length) {
      throw new DemonstrationError(`a hunk of ${file} cannot be made unique`);
    }
  }
}

function findLineBlock(lines: readonly string[], block: readonly string[]): number {
  outer: for (let i = 0; i + block.length <= lines.length; i++) {
    for (let j = 0; j < block.length; j++) if (lines[i + j] !== block[j]) continue outer;
    return i;
  }
  return -1;
}

function occurrences(haystack: string, needle: string): number {
  if (needle === '') return Number.POSITIVE_INFINITY;
  let count = 0;
  for (let i = haystack.indexOf(needle); i >= 0; i = haystack.indexOf(needle, i + 1)) count++;
  return count;
}

/**
 * Test files of the modules the patch touches: `test_<stem>.py`, `<stem>_test.py` or `tests/…<stem>…`
 * named after a changed module (or its package, for `__init__.py`). Never the task's hidden test patch:
 * only files already in the repository.
 */
export function testsOfTouchedModules(diffs: readonly FileDiff[], repoFiles: readonly string[]): string[] {
  const stems = new Set<string>();
  for (const d of diffs) {
    const file = d.newPath ?? d.oldPath;
    if (!file?.endsWith('.py')) continue;
    const parts = file.split('/');
    const base = parts.at(-1)!.replace(/\.py$/, '');
    stems.add(base === '__init__' && parts.length > 1 ? parts.at(-2)! : base);
  }
  const isTestFile = (f: string) => /(^|\/)(test_[^/]*|[^/]*_test)\.py$/.test(f);
  return repoFiles
    .filter((f) => isTestFile(f) && [...stems].some((s) => f.split('/').at(-1)!.includes(s)))
    .sort();
}

/** One call in the R2E format; each value on its own lines, which the parser strips back off. */
export function call(name: string, parameters: Record<string, string>): string {
  const body = Object.entries(parameters)
    .map(([key, value]) => `<parameter=${key}>\n${value}\n</parameter>`)
    .join('\n');
  return `<function=${name}>\n${body}\n</function>`;
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
