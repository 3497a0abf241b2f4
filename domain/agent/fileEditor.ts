import { conciseLines, isPythonPath, MAX_SHOWN_BODY_LINES } from './conciseView';
import { type CommandResult, clipView, DEFAULT_VIEW_CHARS } from './observations';
import { joinRoot, type RepoPath, resolveRepoPath, shellQuote } from './repoPaths';
import type { FileEditorAction } from './toolActions';
import { DEFAULT_UNDO_DEPTH, recordEdit, takeLastEdit, type UndoHistory } from './undoHistory';

/**
 * `file_editor` over file contents as strings: the activity resolves the path (`editorTarget`), reads what
 * is there (`PathState`), calls `runFileEditor`, and writes or removes the file the outcome names. Viewing a
 * directory is the one thing that needs a command (`list_directory`), formatted by `directoryListing`.
 * Every mistake (missing file, ambiguous `old_str`, line out of range) is an observation, never an error.
 */

export type PathState = { kind: 'missing' } | { kind: 'directory' } | { kind: 'file'; content: string };

/** A change the activity makes in the sandbox, at a repository-relative path. */
export type FileChange = { path: string; content: string } | { path: string; remove: true };

export type EditorOutcome =
  | { kind: 'observation'; observation: string; history: UndoHistory; change?: FileChange }
  | { kind: 'list_directory'; command: string };

export interface EditorOptions {
  repoRoot: string;
  maxViewChars?: number;
  undoDepth?: number;
}

const SNIPPET_CONTEXT = 4;

/** The path the action names, checked; or the observation that refuses it. */
export function editorTarget(
  action: FileEditorAction,
  repoRoot: string,
): { ok: true; path: RepoPath } | { ok: false; observation: string } {
  const resolved = resolveRepoPath(action.path, repoRoot);
  return resolved.ok ? resolved : { ok: false, observation: resolved.message };
}

export function runFileEditor(
  action: FileEditorAction,
  path: RepoPath,
  target: PathState,
  history: UndoHistory,
  options: EditorOptions,
): EditorOutcome {
  const say = (observation: string): EditorOutcome => ({ kind: 'observation', observation, history });
  const shown = path.absolute;
  if (action.command === 'undo_edit') return undo(path, history, options);
  if (action.command === 'create') {
    if (target.kind !== 'missing') {
      return say(
        `A ${target.kind} already exists at ${shown}; create does not overwrite. Use str_replace or insert to edit it.`,
      );
    }
    return {
      kind: 'observation',
      observation: `File created successfully at ${shown}.`,
      history: recordEdit(history, path.relative, null, options.undoDepth ?? DEFAULT_UNDO_DEPTH),
      change: { path: path.relative, content: action.fileText },
    };
  }
  if (target.kind === 'missing') return say(`The path ${shown} does not exist.`);
  if (target.kind === 'directory') {
    if (action.command !== 'view')
      return say(`${shown} is a directory; ${action.command} works on files only.`);
    if (action.viewRange) return say(`view_range cannot be used with a directory (${shown}).`);
    return { kind: 'list_directory', command: directoryListingCommand(path.relative) };
  }
  if (target.content.includes('\0'))
    return say(`${shown} is a binary file; the file editor shows and edits text files only.`);
  const lines = splitLines(target.content);
  switch (action.command) {
    case 'view':
      return say(viewFile(shown, lines, action.viewRange, action.concise, options));
    case 'str_replace':
      return replace(path, target.content, action.oldStr, action.newStr, history, options);
    case 'insert': {
      if (action.insertLine > lines.length) {
        return say(
          `insert_line ${action.insertLine} is past the end of ${shown}, which has ${lines.length} lines: use a number from 0 (the top) to ${lines.length} (the end).`,
        );
      }
      const inserted = splitLines(action.newStr.endsWith('\n') ? action.newStr : `${action.newStr}\n`);
      const content = joinLines(
        [...lines.slice(0, action.insertLine), ...inserted, ...lines.slice(action.insertLine)],
        target.content,
      );
      return edited(path, target.content, content, action.insertLine + 1, inserted.length, history, options);
    }
  }
}

function viewFile(
  shown: string,
  lines: string[],
  range: [number, number] | undefined,
  concise: boolean,
  options: EditorOptions,
): string {
  const maxChars = options.maxViewChars ?? DEFAULT_VIEW_CHARS;
  const hint = 'Use view_range to see other lines, or search to find what you need.';
  if (lines.length === 0) return `${shown} is empty.`;
  if (range) {
    const [start, end] = range;
    if (start > lines.length)
      return `view_range starts at line ${start}, but ${shown} has only ${lines.length} lines.`;
    const last = end === -1 ? lines.length : Math.min(end, lines.length);
    const note = end > lines.length ? ` (the file has only ${lines.length} lines)` : '';
    const body = numbered(lines.slice(start - 1, last), start);
    return clipView(
      `Here's the result of running \`cat -n\` on ${shown}, lines ${start}-${last}${note}:\n${body}`,
      maxChars,
      hint,
    );
  }
  if (concise && isPythonPath(shown)) {
    const skeleton = conciseLines(lines)
      .map((l) =>
        l.kind === 'line'
          ? numberedLine(l.number, l.text)
          : `${''.padStart(6)}\t${l.indent}... lines ${l.from}-${l.to} elided ...`,
      )
      .join('\n');
    const header = `Here is a concise view of ${shown}: function bodies longer than ${MAX_SHOWN_BODY_LINES} lines are elided; view them with view_range.`;
    return clipView(`${header}\n${skeleton}`, maxChars, hint);
  }
  const note = concise ? ' (concise views are for Python files; this is the whole file)' : '';
  return clipView(
    `Here's the result of running \`cat -n\` on ${shown}${note}:\n${numbered(lines, 1)}`,
    maxChars,
    hint,
  );
}

function replace(
  path: RepoPath,
  content: string,
  oldStr: string,
  newStr: string,
  history: UndoHistory,
  options: EditorOptions,
): EditorOutcome {
  const starts: number[] = [];
  for (let i = content.indexOf(oldStr); i >= 0; i = content.indexOf(oldStr, i + 1)) starts.push(i);
  const lineOf = (offset: number) => content.slice(0, offset).split('\n').length;
  if (starts.length !== 1) {
    const observation =
      starts.length === 0
        ? `No replacement was made: old_str does not occur verbatim in ${path.absolute}. Check whitespace and indentation, e.g. with view and a view_range.`
        : `No replacement was made: old_str occurs ${starts.length} times in ${path.absolute}, starting on lines ${starts.map(lineOf).join(', ')}. Include more surrounding lines in old_str so that it occurs exactly once.`;
    return { kind: 'observation', observation, history };
  }
  const at = starts[0]!;
  const updated = content.slice(0, at) + newStr + content.slice(at + oldStr.length);
  return edited(path, content, updated, lineOf(at), newStr.split('\n').length, history, options);
}

/** The outcome of an edit: the new contents, the old ones recorded for undo, and a numbered snippet. */
function edited(
  path: RepoPath,
  before: string,
  after: string,
  firstLine: number,
  lineCount: number,
  history: UndoHistory,
  options: EditorOptions,
): EditorOutcome {
  const lines = splitLines(after);
  const from = Math.max(1, firstLine - SNIPPET_CONTEXT);
  const to = Math.min(lines.length, firstLine + lineCount - 1 + SNIPPET_CONTEXT);
  const snippet = numbered(lines.slice(from - 1, to), from);
  return {
    kind: 'observation',
    observation: clipView(
      `The file ${path.absolute} has been edited. Here's the result of running \`cat -n\` on a snippet of it:\n${snippet}\nReview the change and make sure it is as expected; edit the file again if necessary.`,
      options.maxViewChars ?? DEFAULT_VIEW_CHARS,
      'The snippet is long; use view with a view_range to see the rest.',
    ),
    history: recordEdit(history, path.relative, before, options.undoDepth ?? DEFAULT_UNDO_DEPTH),
    change: { path: path.relative, content: after },
  };
}

function undo(path: RepoPath, history: UndoHistory, options: EditorOptions): EditorOutcome {
  const last = takeLastEdit(history, path.relative);
  if (!last)
    return { kind: 'observation', observation: `There is no edit of ${path.absolute} to undo.`, history };
  if (last.previous === null) {
    return {
      kind: 'observation',
      observation: `Last edit of ${path.absolute} undone: the file did not exist before it was created, so it was removed.`,
      history: last.history,
      change: { path: path.relative, remove: true },
    };
  }
  const view = last.previous === '' ? '(the file is now empty)' : numbered(splitLines(last.previous), 1);
  return {
    kind: 'observation',
    observation: clipView(
      `Last edit of ${path.absolute} undone. Here's the result of running \`cat -n\` on it:\n${view}`,
      options.maxViewChars ?? DEFAULT_VIEW_CHARS,
      'Use view with a view_range to see the rest.',
    ),
    history: last.history,
    change: { path: path.relative, content: last.previous },
  };
}

/** Lists non-hidden files and directories up to two levels under `relative`, one `<type> <path>` a line. */
export function directoryListingCommand(relative: string): string {
  // Relative names, so that a hidden directory above the repository does not hide everything in it.
  return `find ${shellQuote(relative)} -maxdepth 2 -not -path '*/.*' -printf '%y %p\\n' | LC_ALL=C sort -k 2`;
}

export function directoryListing(relative: string, result: CommandResult, options: EditorOptions): string {
  const shown = joinRoot(options.repoRoot, relative);
  if (result.exitCode !== 0) {
    return `Listing ${shown} failed (exit code ${result.exitCode ?? -1}): ${result.stderr.trim() || '(no message)'}`;
  }
  const entries = result.stdout
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => {
      const entry = /^([a-z]) (.*)$/.exec(line);
      if (!entry) return line; // the sandbox's own note of output it cut
      const absolute = joinRoot(options.repoRoot, entry[2]!.replace(/^\.(\/|$)/, ''));
      return entry[1] === 'd' ? `${absolute}/` : absolute;
    });
  return clipView(
    `Here are the files and directories up to 2 levels deep in ${shown}, excluding hidden items:\n${entries.join('\n')}`,
    options.maxViewChars ?? DEFAULT_VIEW_CHARS,
    'View a subdirectory to see its contents.',
  );
}

/** The lines of a file; a final newline ends the last line rather than starting an empty one. */
function splitLines(content: string): string[] {
  if (content === '') return [];
  return (content.endsWith('\n') ? content.slice(0, -1) : content).split('\n');
}

/** Joins lines, ending with a newline when the original did (or was empty). */
function joinLines(lines: string[], original: string): string {
  const newline = original === '' || original.endsWith('\n');
  return lines.join('\n') + (newline && lines.length > 0 ? '\n' : '');
}

function numberedLine(number: number, text: string): string {
  return `${String(number).padStart(6)}\t${text}`;
}

function numbered(lines: string[], firstNumber: number): string {
  return lines.map((line, i) => numberedLine(firstNumber + i, line)).join('\n');
}
