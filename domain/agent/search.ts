import { type CommandResult, clipView, DEFAULT_VIEW_CHARS } from './observations';
import { joinRoot, type RepoPath, shellQuote } from './repoPaths';

/**
 * The `search` tool: one command that searches a directory (recursively, non-hidden files, binary files
 * skipped: the number of matches per file) or a file (`grep -n`: the matching lines), for the term as a
 * fixed string, and the observation made of its output. Over `MAX_SEARCH_FILES` matching files, the model
 * is asked to narrow the search, as in R2E.
 */

export const MAX_SEARCH_FILES = 100;

/**
 * The command's first line says what the path was (`@dir`, `@file`, `@missing`). The directory search
 * runs inside the directory with no path argument because GNU grep applies `--exclude-dir` to a
 * command-line directory too, so `grep -r --exclude-dir='.*' TERM .` would search nothing.
 */
export function searchCommand(term: string, path: RepoPath): string {
  const p = shellQuote(path.relative);
  const t = shellQuote(term);
  return [
    `if [ -d ${p} ]; then echo @dir; cd -- ${p} && grep -rIcF --exclude-dir='.*' --exclude='.*' -e ${t} | grep -v ':0$' | LC_ALL=C sort;`,
    `elif [ -f ${p} ]; then echo @file; grep -nF -e ${t} -- ${p};`,
    'else echo @missing; fi; true',
  ].join(' ');
}

export function searchObservation(
  term: string,
  path: RepoPath,
  result: CommandResult,
  options: { repoRoot: string; maxViewChars?: number },
): string {
  const shown = path.absolute;
  const quoted = JSON.stringify(term);
  const [kind, ...lines] = result.stdout.split('\n').filter((l) => l !== '');
  const maxChars = options.maxViewChars ?? DEFAULT_VIEW_CHARS;
  if (result.timedOut || result.exitCode !== 0 || kind === undefined) {
    return `The search for ${quoted} in ${shown} failed: ${result.timedOut ? 'it took too long; search a smaller directory' : result.stderr.trim() || `exit code ${result.exitCode ?? -1}`}.`;
  }
  if (kind === '@missing') return `The path ${shown} does not exist.`;
  // The command ends with `true`, so grep's own errors (an unreadable file) show only on stderr.
  if (lines.length === 0 && result.stderr.trim() !== '') {
    return `The search for ${quoted} in ${shown} failed: ${result.stderr.trim()}`;
  }
  if (kind === '@file') {
    if (lines.length === 0) return `No matches found for ${quoted} in ${shown}.`;
    return clipView(
      `Matches for ${quoted} in ${shown}:\n${lines.join('\n')}\nEnd of matches for ${quoted} in ${shown}`,
      maxChars,
      'There are too many matches to show; search for a more specific term.',
    );
  }
  const files = lines.flatMap((line) => {
    const m = /^(.*):(\d+)$/.exec(line);
    return m ? [{ file: m[1]!, count: Number(m[2]) }] : [];
  });
  if (files.length > MAX_SEARCH_FILES || result.stdoutCutBytes > 0) {
    return `More than ${MAX_SEARCH_FILES} files matched ${quoted} in ${shown}. Please narrow your search.`;
  }
  if (files.length === 0) return `No matches found for ${quoted} in ${shown}.`;
  const total = files.reduce((sum, f) => sum + f.count, 0);
  const base = path.relative === '.' ? '' : `${path.relative}/`;
  const listing = files.map(
    (f) => `${joinRoot(options.repoRoot, base + f.file)} (${f.count} ${f.count === 1 ? 'match' : 'matches'})`,
  );
  return clipView(
    `Found ${total} ${total === 1 ? 'match' : 'matches'} for ${quoted} in ${shown}:\n${listing.join('\n')}\nEnd of matches for ${quoted} in ${shown}`,
    maxChars,
    'Search a smaller directory to see every file.',
  );
}
