/**
 * Paths the model names, checked against the repository root as the sandbox sees it (`Sandbox.repoPath`,
 * e.g. `/testbed`). A path is either relative to that root or absolute under it; anything that resolves
 * outside it (`..`, another absolute path) is refused. Plain string logic, no `node:path`, so that workflow
 * code can use it too.
 *
 * This is a check on names only: a symbolic link inside the repository can still point elsewhere. That is
 * the sandbox's business, which shows the command only the sandbox's own files in any case.
 */

export interface RepoPath {
  /** Relative to the repository root, normalised, `.` for the root itself. */
  relative: string;
  /** As the sandbox sees it: the root joined with `relative`. */
  absolute: string;
}

export type RepoPathResult = { ok: true; path: RepoPath } | { ok: false; message: string };

export function resolveRepoPath(input: string, repoRoot: string): RepoPathResult {
  const root = normaliseAbsolute(repoRoot);
  const name = input.trim();
  if (name === '') return { ok: false, message: 'The path is empty.' };
  if (name.includes('\0')) return { ok: false, message: 'The path contains a NUL character.' };
  const outside = {
    ok: false as const,
    message: `The path ${name} is outside the repository. Use a path under ${root} or relative to it.`,
  };
  const parts: string[] = [];
  let rest: string;
  if (name.startsWith('/')) {
    const absolute = normaliseAbsolute(name);
    if (absolute !== root && !absolute.startsWith(root === '/' ? '/' : `${root}/`)) return outside;
    rest = absolute.slice(root.length);
  } else {
    rest = name;
  }
  for (const part of rest.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (parts.length === 0) return outside;
      parts.pop();
    } else {
      parts.push(part);
    }
  }
  const relative = parts.length === 0 ? '.' : parts.join('/');
  return { ok: true, path: { relative, absolute: joinRoot(root, relative) } };
}

/** The sandbox's name of a repository-relative path. */
export function joinRoot(repoRoot: string, relative: string): string {
  const root = normaliseAbsolute(repoRoot);
  if (relative === '.' || relative === '') return root;
  return root === '/' ? `/${relative}` : `${root}/${relative}`;
}

/** `/a/./b/../c/` → `/a/c`; `..` above `/` stays at `/`, as the kernel resolves it. */
function normaliseAbsolute(path: string): string {
  const parts: string[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') parts.pop();
    else parts.push(part);
  }
  return `/${parts.join('/')}`;
}

/** A word for bash that stands for exactly `text`: single quotes, with each `'` written as `'\''`. */
export function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}
