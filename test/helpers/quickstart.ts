import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PROJECT_ROOT } from '../../activities/paths';
import { instanceSchema, type TaskInstance } from '../../domain/instance';

/** A quickstart instance (a real package) with its source resolved. */
export function quickstartInstance(id: string): TaskInstance {
  const dir = path.join(PROJECT_ROOT, 'tasks', 'quickstart');
  const row = fs
    .readFileSync(path.join(dir, 'instances.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as TaskInstance)
    .find((r) => r.instance_id === id);
  if (!row) throw new Error(`no quickstart instance ${id}`);
  const source = row.source as { kind: 'git'; path: string };
  return instanceSchema.parse({ ...row, source: { ...source, path: path.resolve(dir, source.path) } });
}

/** Runs `work` in a fresh clone of the instance's repository checked out at its base commit. */
export function atBaseCommit<T>(
  instance: TaskInstance,
  work: (dir: string, git: (...args: string[]) => string) => T,
): T {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'entropo-base-'));
  const git = (...args: string[]) => execFileSync('git', args, { cwd: dir, encoding: 'utf8' });
  try {
    git('clone', '--quiet', (instance.source as { path: string }).path, '.');
    git('checkout', '--quiet', instance.base_commit);
    return work(dir, git);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The diff that `edit` makes to the instance's repository at its base commit (new files included). */
export function patchFrom(instance: TaskInstance, edit: (dir: string) => void): string {
  return atBaseCommit(instance, (dir, git) => {
    edit(dir);
    git('add', '-A');
    return git('diff', '--cached', instance.base_commit);
  });
}
