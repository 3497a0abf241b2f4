import * as fs from 'node:fs';
import * as path from 'node:path';
import type { TaskInstance } from '../domain/instance';
import { InvalidInputError, problemsFromZod } from '../domain/schemaErrors';
import { type SuiteManifest, suiteManifestSchema } from '../domain/taskSuite';

/** A suite on disk: `instances.jsonl` and `manifest.json` in one directory. */

export function writeSuite(
  dir: string,
  instances: TaskInstance[],
  manifest: Omit<SuiteManifest, 'instanceCount' | 'instancesFile'>,
): SuiteManifest {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(
    path.join(dir, 'instances.jsonl'),
    instances.map((i) => `${JSON.stringify(i)}\n`).join(''),
  );
  const full: SuiteManifest = {
    ...manifest,
    instancesFile: 'instances.jsonl',
    instanceCount: instances.length,
  };
  fs.writeFileSync(path.join(dir, 'manifest.json'), `${JSON.stringify(full, null, 2)}\n`);
  return full;
}

/** The suite's manifest, if it has one; a malformed one is reported field by field. */
export function readManifest(dir: string): SuiteManifest | undefined {
  const file = path.join(dir, 'manifest.json');
  if (!fs.existsSync(file)) return undefined;
  const parsed = suiteManifestSchema.safeParse(JSON.parse(fs.readFileSync(file, 'utf8')));
  if (!parsed.success)
    throw new InvalidInputError(`suite manifest ${file}`, problemsFromZod(parsed.error, { file }));
  return parsed.data;
}
