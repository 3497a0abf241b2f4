import { z } from 'zod';

/**
 * The file editor's undo history: for each repository-relative path, the contents the file had before each
 * edit, oldest first; `null` means the file did not exist (an undo of `create` removes it). It is plain JSON
 * and part of rollout state (checkpointed with the patch), so `undo_edit` works after a sandbox restore.
 * Functions here never mutate their input; they return a new history.
 */
export type UndoHistory = Record<string, (string | null)[]>;

/** Checks the shape by hand: zod's `record` drops a `__proto__` key, which is a legal file name. */
export const undoHistorySchema = z.custom<UndoHistory>(
  (value) =>
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    Object.values(value).every(
      (v) => Array.isArray(v) && v.every((x) => x === null || typeof x === 'string'),
    ),
  { message: 'expected an object mapping each path to a list of earlier contents (strings or null)' },
);

/** How many earlier versions are kept per path; older ones are dropped first. */
export const DEFAULT_UNDO_DEPTH = 10;

export function emptyUndoHistory(): UndoHistory {
  return {};
}

/** Records the contents `path` had before an edit. */
export function recordEdit(
  history: UndoHistory,
  path: string,
  previous: string | null,
  depth = DEFAULT_UNDO_DEPTH,
): UndoHistory {
  const versions = [...versionsOf(history, path), previous].slice(-Math.max(1, depth));
  return withPath(history, path, versions);
}

/** The contents before the last edit of `path` and the history without it, or null when there is none. */
export function takeLastEdit(
  history: UndoHistory,
  path: string,
): { previous: string | null; history: UndoHistory } | null {
  const versions = versionsOf(history, path);
  if (versions.length === 0) return null;
  return { previous: versions.at(-1)!, history: withPath(history, path, versions.slice(0, -1)) };
}

/** Own keys only: `history['__proto__']` would otherwise be Object.prototype. */
function versionsOf(history: UndoHistory, path: string): (string | null)[] {
  return Object.hasOwn(history, path) ? history[path]! : [];
}

function withPath(history: UndoHistory, path: string, versions: (string | null)[]): UndoHistory {
  const entries = Object.entries(history).filter(([p]) => p !== path);
  if (versions.length > 0) entries.push([path, versions]);
  // Sorted, so that equal histories serialise to equal JSON (a checkpoint's id is a hash of its contents);
  // fromEntries, not assignment, so that a path such as `__proto__` stays an ordinary key.
  entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return Object.fromEntries(entries);
}
