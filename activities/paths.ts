import * as path from 'node:path';

/** The project root (where package.json lives); the default home of `.entropo/` and `.venv/`. */
export const PROJECT_ROOT = path.resolve(__dirname, '..');

/** Local state of runs, artifacts and sandboxes. `ENTROPO_HOME` overrides `<project>/.entropo`. */
export function entropoHome(): string {
  return path.resolve(process.env.ENTROPO_HOME ?? path.join(PROJECT_ROOT, '.entropo'));
}

export function artifactsDir(): string {
  return path.join(entropoHome(), 'artifacts');
}

export function sandboxesDir(): string {
  return path.join(entropoHome(), 'sandboxes');
}

/** The project virtualenv's bin directory: the pinned `temporal` CLI and the python used inside sandboxes. */
export function venvBin(): string {
  return path.resolve(process.env.ENTROPO_VENV ?? path.join(PROJECT_ROOT, '.venv'), 'bin');
}

/** Pruned copies of task repositories, one per (repository, base commit), that sandboxes are made from. */
export function repoCacheDir(): string {
  return path.join(entropoHome(), 'repo-cache');
}
