import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PROJECT_ROOT } from '../../activities/paths';

/** Gives the test file its own ENTROPO_HOME (artifacts, sandboxes, runs) under the system tmp dir. */
export function isolatedHome(name: string): string {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), `entropo-${name}-`));
  process.env.ENTROPO_HOME = home;
  return home;
}

export const FIXTURE_INSTANCES = path.join(PROJECT_ROOT, 'tasks', 'fixtures', 'instances.jsonl');
export const FIXTURE_REPO = path.join(PROJECT_ROOT, 'tasks', 'fixtures', 'repos', 'inflection');

export function fixtureInstances(): Record<string, unknown>[] {
  return fs
    .readFileSync(FIXTURE_INSTANCES, 'utf8')
    .trim()
    .split('\n')
    .map((line) => {
      const row = JSON.parse(line) as Record<string, unknown>;
      return { ...row, source: { kind: 'git', path: FIXTURE_REPO } };
    });
}

/** Writes instances to a JSONL file in `dir` and returns its path. */
export function writeInstances(
  dir: string,
  rows: Record<string, unknown>[],
  name = 'instances.jsonl',
): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`);
  return file;
}
