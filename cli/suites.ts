import * as fs from 'node:fs';
import * as path from 'node:path';
import { PROJECT_ROOT } from '../activities/paths';
import { readManifest, writeSuite } from '../activities/suiteFiles';
import { type ImportFormat, importInstances } from '../domain/importers';
import { parseInstancesOrThrow, type TaskInstance } from '../domain/instance';
import { describeProblems, InvalidInputError } from '../domain/schemaErrors';
import { type SplitBy, splitInstances } from '../domain/suiteSplit';
import type { SuiteManifest } from '../domain/taskSuite';

/**
 * `entropo tasks import | list | show | split` and the suite bookkeeping of `tasks validate`: a suite is a
 * directory with `instances.jsonl` and `manifest.json`; a bare instance file works where a suite does.
 */

export const TASKS_ROOT = path.join(PROJECT_ROOT, 'tasks');

export interface SuiteRef {
  /** The suite directory, when the instances live in one with a manifest. */
  dir?: string;
  instancesFile: string;
  manifest?: SuiteManifest;
}

/** A suite named by its directory, its name under `tasks/`, or its instance file. */
export function resolveSuite(arg: string): SuiteRef {
  const candidates = [arg, path.join(TASKS_ROOT, arg)];
  for (const candidate of candidates) {
    const isSuite = ['manifest.json', 'instances.jsonl'].some((f) => fs.existsSync(path.join(candidate, f)));
    if (fs.existsSync(candidate) && fs.statSync(candidate).isDirectory() && isSuite) {
      const manifest = readManifest(candidate);
      const instancesFile = path.join(candidate, manifest?.instancesFile ?? 'instances.jsonl');
      if (!fs.existsSync(instancesFile) || fs.statSync(instancesFile).isDirectory()) {
        throw new InvalidInputError('suite', [
          {
            ...(manifest
              ? { file: path.join(candidate, 'manifest.json'), field: 'instancesFile' }
              : { field: '' }),
            message: `the suite's instance file ${instancesFile} is missing or not a file`,
          },
        ]);
      }
      return {
        dir: candidate,
        instancesFile,
        manifest,
      };
    }
  }
  if (!fs.existsSync(arg)) {
    throw new InvalidInputError('suite', [
      { field: '', message: `${arg}: no such suite directory, suite name or instance file` },
    ]);
  }
  if (fs.statSync(arg).isDirectory()) {
    throw new InvalidInputError('suite', [
      {
        field: '',
        message: `${arg} is a directory without instances.jsonl or manifest.json; expected a suite directory (holding instances.jsonl), a suite name under ${TASKS_ROOT}, or an instance file (.jsonl or .json)`,
      },
    ]);
  }
  const dir = path.dirname(arg);
  const manifest = readManifest(dir);
  return manifest && path.resolve(dir, manifest.instancesFile) === path.resolve(arg)
    ? { dir, instancesFile: arg, manifest }
    : { instancesFile: arg };
}

/** Records a validation run in the suite's manifest. */
export function recordValidation(
  suite: SuiteRef,
  validation: NonNullable<SuiteManifest['validation']>,
): void {
  if (!suite.dir || !suite.manifest) return;
  const manifest = { ...suite.manifest, validation };
  fs.writeFileSync(path.join(suite.dir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
}

export function runImport(
  file: string,
  options: { format: string; out: string; skipInvalid?: boolean; testCommand?: string; name?: string },
  log: (line: string) => void,
): number {
  if (options.format !== 'swebench' && options.format !== 'r2e-gym') {
    throw new InvalidInputError('import', [
      { field: 'format', message: `unknown format "${options.format}" (swebench, r2e-gym)` },
    ]);
  }
  const text = fs.readFileSync(file, 'utf8');
  const result = importInstances(text, file, options.format as ImportFormat, {
    testCommand: options.testCommand,
  });
  for (const note of result.notes) log(`note: ${note}`);
  if (result.problems.length > 0) {
    log(describeProblems(`import of ${file}`, result.problems));
    if (!options.skipInvalid) {
      log(
        `nothing written: ${result.badLines.length} bad row(s) of ${result.rows}; fix them or pass --skip-invalid`,
      );
      return 2;
    }
    log(`skipping ${new Set(result.badLines).size} bad row(s) (--skip-invalid)`);
  }
  if (result.instances.length === 0) {
    log('no instance to write');
    return 2;
  }
  const name = options.name ?? path.basename(options.out);
  writeSuite(options.out, result.instances, {
    name,
    description: `imported from ${path.basename(file)} (${options.format})`,
    source: options.format === 'swebench' ? 'swebench' : 'r2e-gym',
    createdAt: new Date().toISOString(),
    imported: {
      file: path.resolve(file),
      rows: result.rows,
      skipped: [...new Set(result.badLines)]
        .sort((a, b) => a - b)
        .map((line) => `${path.basename(file)}:${line}`),
    },
  });
  log(`${result.instances.length} instance(s) written to ${path.join(options.out, 'instances.jsonl')}`);
  return 0;
}

function loadInstances(suite: SuiteRef): TaskInstance[] {
  return parseInstancesOrThrow(fs.readFileSync(suite.instancesFile, 'utf8'), suite.instancesFile);
}

export function runList(root: string, print: (line: string) => void): number {
  const rows: string[][] = [];
  const visit = (dir: string, depth: number) => {
    if (!fs.existsSync(dir)) return;
    if (fs.existsSync(path.join(dir, 'manifest.json'))) {
      const m = readManifest(dir)!;
      const validation = m.validation ? `${m.validation.valid}/${m.instanceCount} valid` : 'not validated';
      const packages =
        m.packages?.map((p) => `${p.name} ${p.version}`).join(', ') ??
        m.imported?.file ??
        m.split?.from ??
        '';
      rows.push([
        m.name,
        path.relative(process.cwd(), dir) || '.',
        m.source,
        String(m.instanceCount),
        validation,
        packages,
      ]);
      return;
    }
    if (depth === 0) return;
    for (const entry of fs.readdirSync(dir).sort()) {
      const child = path.join(dir, entry);
      if (fs.statSync(child).isDirectory() && !entry.startsWith('.') && entry !== 'repos')
        visit(child, depth - 1);
    }
  };
  visit(root, 2);
  if (rows.length === 0) {
    print(
      `no suites under ${root} (a suite is a directory with manifest.json; build one with \`entropo tasks build\`)`,
    );
    return 0;
  }
  const header = ['suite', 'path', 'source', 'tasks', 'validation', 'from'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const row of [header, ...rows])
    print(
      row
        .map((cell, i) => cell.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    );
  return 0;
}

export function runShow(
  suiteArg: string,
  instanceId: string | undefined,
  print: (line: string) => void,
): number {
  const suite = resolveSuite(suiteArg);
  const instances = loadInstances(suite);
  if (instanceId) {
    const instance = instances.find((i) => i.instance_id === instanceId);
    if (!instance) {
      throw new InvalidInputError('show', [
        { field: 'instance', message: `no instance ${instanceId} in ${suite.instancesFile}` },
      ]);
    }
    print(`${instance.instance_id}  (${instance.repo} @ ${instance.base_commit.slice(0, 12)})`);
    print(`FAIL_TO_PASS: ${instance.FAIL_TO_PASS.length}   PASS_TO_PASS: ${instance.PASS_TO_PASS.length}`);
    if (instance.test_command) print(`test command: ${instance.test_command}`);
    print('');
    print(instance.problem_statement);
    return 0;
  }
  const m = suite.manifest;
  print(
    `${m?.name ?? path.basename(suite.instancesFile)}: ${instances.length} instance(s) in ${suite.instancesFile}`,
  );
  if (m) {
    print(`source: ${m.source}${m.seed !== undefined ? `, seed ${m.seed}` : ''}, created ${m.createdAt}`);
    if (m.description) print(m.description);
    for (const p of m.packages ?? [])
      print(
        `  ${p.name} ${p.version} (${p.sha256 ? `sha256 ${p.sha256.slice(0, 12)}…` : 'local source'}): ${p.instances} task(s)`,
      );
    if (m.build) {
      print(
        `build: ${m.build.kept} kept of ${m.build.tried} mutations tried in ${m.build.seconds} s; refused: ${JSON.stringify(m.build.refused)}`,
      );
    }
    if (m.split) print(`split of ${m.split.from} by ${m.split.by} (${m.split.part}), seed ${m.split.seed}`);
    if (m.validation)
      print(
        `validation ${m.validation.at}: ${m.validation.valid}/${instances.length} valid; report ${m.validation.report}`,
      );
  }
  for (const i of instances)
    print(`  ${i.instance_id}  F2P ${i.FAIL_TO_PASS.length}  P2P ${i.PASS_TO_PASS.length}`);
  return 0;
}

export function runSplit(
  suiteArg: string,
  options: { by: string; testFraction: number; seed: number; trainOut: string; testOut: string },
  log: (line: string) => void,
): number {
  if (options.by !== 'package' && options.by !== 'module') {
    throw new InvalidInputError('split', [
      { field: 'by', message: `"${options.by}" (expected package or module)` },
    ]);
  }
  if (!(options.testFraction > 0 && options.testFraction < 1)) {
    throw new InvalidInputError('split', [{ field: 'test-fraction', message: 'must be between 0 and 1' }]);
  }
  const suite = resolveSuite(suiteArg);
  const instances = loadInstances(suite);
  const split = splitInstances(instances, {
    by: options.by as SplitBy,
    testFraction: options.testFraction,
    seed: options.seed,
  });
  const from = suite.manifest?.name ?? suite.instancesFile;
  // Relative source paths resolve against the instance file: rewrite them for the new locations.
  const relocate = (list: TaskInstance[], dir: string) =>
    list.map((i) =>
      i.source && i.source.kind !== 'docker_image'
        ? {
            ...i,
            source: {
              ...i.source,
              path: path.relative(dir, path.resolve(path.dirname(suite.instancesFile), i.source.path)),
            },
          }
        : i,
    );
  for (const [part, list, dir, groups] of [
    ['train', split.train, options.trainOut, split.trainGroups],
    ['test', split.test, options.testOut, split.testGroups],
  ] as const) {
    writeSuite(dir, relocate(list, dir), {
      name: path.basename(dir),
      description: `${part} part of ${from}, split by ${options.by}: ${groups.join(', ')}`,
      source: 'split',
      createdAt: new Date().toISOString(),
      split: { from, by: options.by, part, seed: options.seed },
      heldOut: part === 'test',
      packages: suite.manifest?.packages
        ?.map((p) => ({
          ...p,
          instances: list.filter((i) => i.instance_id.startsWith(`${p.name.toLowerCase()}__`)).length,
        }))
        .filter((p) => p.instances > 0),
    });
    log(`${part}: ${list.length} instance(s) → ${dir} (${groups.join(', ')})`);
  }
  return 0;
}
