/**
 * A small reader of unified diffs as `git diff` writes them (the gold patches of SWE-bench-style tasks):
 * which files change and, per file, its hunks as old and new line blocks.
 */

export interface DiffHunk {
  /** 1-based first line of the hunk in the old file (0 for an empty old file). */
  oldStart: number;
  /** The hunk's lines as they read before the change (context and removed lines). */
  oldLines: string[];
  /** The hunk's lines as they read after the change (context and added lines). */
  newLines: string[];
}

export interface FileDiff {
  /** Path before the change, or null when the file is created. */
  oldPath: string | null;
  /** Path after the change, or null when the file is deleted. */
  newPath: string | null;
  hunks: DiffHunk[];
  /** A binary change (`GIT binary patch` / `Binary files … differ`): no text hunks. */
  binary: boolean;
}

const HUNK_HEADER = /^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@/;

function stripPrefix(path: string): string | null {
  if (path === '/dev/null') return null;
  const clean = path.replace(/\t.*$/, '');
  return clean.replace(/^[ab]\//, '');
}

export function parseUnifiedDiff(patch: string): FileDiff[] {
  const files: FileDiff[] = [];
  const lines = patch.split('\n');
  let file: FileDiff | undefined;
  let hunk: DiffHunk | undefined;
  let oldLeft = 0;
  let newLeft = 0;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (hunk && (oldLeft > 0 || newLeft > 0)) {
      if (line.startsWith('\\')) continue; // "\ No newline at end of file"
      const body = line.slice(1);
      if (line.startsWith('+')) {
        hunk.newLines.push(body);
        newLeft--;
      } else if (line.startsWith('-')) {
        hunk.oldLines.push(body);
        oldLeft--;
      } else {
        // A context line ('' stands for a blank context line some tools strip to nothing).
        hunk.oldLines.push(body);
        hunk.newLines.push(body);
        oldLeft--;
        newLeft--;
      }
      continue;
    }
    hunk = undefined;
    const git = /^diff --git a\/(.+) b\/(.+)$/.exec(line);
    if (git) {
      file = { oldPath: git[1]!, newPath: git[2]!, hunks: [], binary: false };
      files.push(file);
      continue;
    }
    if (!file) continue;
    if (line.startsWith('new file mode')) file.oldPath = null;
    else if (line.startsWith('deleted file mode')) file.newPath = null;
    else if (line.startsWith('--- ')) file.oldPath = stripPrefix(line.slice(4));
    else if (line.startsWith('+++ ')) file.newPath = stripPrefix(line.slice(4));
    else if (line.startsWith('GIT binary patch') || /^Binary files .* differ$/.test(line)) file.binary = true;
    else {
      const header = HUNK_HEADER.exec(line);
      if (header) {
        hunk = { oldStart: Number(header[1]), oldLines: [], newLines: [] };
        oldLeft = header[2] === undefined ? 1 : Number(header[2]);
        newLeft = header[4] === undefined ? 1 : Number(header[4]);
        file.hunks.push(hunk);
      }
    }
  }
  return files;
}
