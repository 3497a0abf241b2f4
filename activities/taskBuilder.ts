/**
 * `entropo tasks build <spec.json>`: a procedural task suite from real code, SWE-smith style.
 *
 * For each pinned package of the spec:
 *   1. fetch its sdist from PyPI (pip checks the sha256), unpack it into a git repository (`upstream`);
 *   2. run its own tests once in a local sandbox with a tracer: per test, the functions it calls;
 *   3. list AST mutation sites in its source (`activities/taskbuilder/mutate.py`), keep those in functions some
 *      test calls, and try them in the seed's order: apply one, run the tests, keep it only when at least
 *      one test breaks and every broken test calls the mutated function (`domain/mutationVerdict.ts`);
 *   4. for a kept bug, commit the base (a root commit, fixed author and date, so the hash is the same on
 *      every machine): the bug in, the broken tests taken out. The gold `patch` undoes the bug; the
 *      `test_patch` restores the tests. FAIL_TO_PASS / PASS_TO_PASS come from running the tests with the
 *      test patch, before and after the gold patch, and the problem statement from the failing test's
 *      traceback (`domain/problemStatement.ts`).
 * Writes `<out>/instances.jsonl`, `<out>/manifest.json` and `<out>/repos/<package>/`.
 */

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { TaskInstance } from '../domain/instance';
import {
  judgeMutation,
  testFunctionsOf,
  unstableTestFunctions,
  withoutUnstable,
} from '../domain/mutationVerdict';
import { writeProblemStatement } from '../domain/problemStatement';
import { type SandboxLimits, sandboxLimitsSchema } from '../domain/runConfig';
import { seededShuffle } from '../domain/seededShuffle';
import {
  packageTestCommand,
  proceduralInstanceId,
  type SuiteManifest,
  type SuitePackage,
  type SuiteSpec,
} from '../domain/taskSuite';
import { parsePytestLog, type TestStatusMap } from '../domain/testLog';
import { LocalSandboxBackend } from './localSandbox';
import { entropoHome, PROJECT_ROOT, sandboxesDir, venvBin } from './paths';
import type { ExecResult, Sandbox } from './sandboxBackend';
import { writeSuite } from './suiteFiles';

const TASKBUILDER_DIR = path.join(PROJECT_ROOT, 'activities', 'taskbuilder');
const COMMIT_ENV = {
  GIT_AUTHOR_NAME: 'entropo tasks build',
  GIT_AUTHOR_EMAIL: 'tasks@entropo.invalid',
  GIT_AUTHOR_DATE: '2024-01-01T00:00:00Z',
  GIT_COMMITTER_NAME: 'entropo tasks build',
  GIT_COMMITTER_EMAIL: 'tasks@entropo.invalid',
  GIT_COMMITTER_DATE: '2024-01-01T00:00:00Z',
};
const TEST_TIMEOUT_SEC = 120;
/** Without `verbose`, a progress line every this many mutations instead of a line per refused one. */
const PROGRESS_EVERY = 25;

export interface MutationSite {
  kind: string;
  file: string;
  function: string;
  line: number;
  start: number;
  end: number;
  replacement: string;
  description: string;
}

type Log = (line: string) => void;

function sh(command: string, args: string[], cwd: string): string {
  return execFileSync(command, args, {
    cwd,
    env: { ...process.env, ...COMMIT_ENV, PYTHONDONTWRITEBYTECODE: '1' },
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

const git = (repo: string, ...args: string[]) => sh('git', args, repo);

/** Downloads the sdist with pip, which refuses a file whose sha256 differs; returns its path. */
export function fetchSdist(pkg: Pick<SuitePackage, 'name' | 'version' | 'sha256'>): string {
  const downloads = path.join(entropoHome(), 'downloads');
  fs.mkdirSync(downloads, { recursive: true });
  const find = () =>
    fs
      .readdirSync(downloads)
      .filter((f) => f.endsWith('.tar.gz') || f.endsWith('.zip'))
      .map((f) => path.join(downloads, f))
      .find((f) => createHash('sha256').update(fs.readFileSync(f)).digest('hex') === pkg.sha256);
  const cached = find();
  if (cached) return cached;
  const requirements = path.join(downloads, `${pkg.name}-${pkg.version}.requirements.txt`);
  fs.writeFileSync(requirements, `${pkg.name}==${pkg.version} --hash=sha256:${pkg.sha256}\n`);
  sh(
    path.join(venvBin(), 'pip'),
    [
      'download',
      '--quiet',
      '--disable-pip-version-check',
      '--no-deps',
      '--no-binary',
      ':all:',
      '--require-hashes',
      '-r',
      requirements,
      '-d',
      downloads,
    ],
    PROJECT_ROOT,
  );
  const fetched = find();
  if (!fetched)
    throw new Error(`pip downloaded no sdist of ${pkg.name}==${pkg.version} with sha256 ${pkg.sha256}`);
  return fetched;
}

/** The Python files of the package's source paths, tests and build scripts left out. */
function sourceFiles(repo: string, pkg: SuitePackage): string[] {
  const files: string[] = [];
  const walk = (relative: string) => {
    const absolute = path.join(repo, relative);
    if (!fs.existsSync(absolute)) throw new Error(`${pkg.name}: source path ${relative} is not in the sdist`);
    if (fs.statSync(absolute).isFile()) {
      if (relative.endsWith('.py')) files.push(relative);
      return;
    }
    for (const entry of fs.readdirSync(absolute).sort()) {
      if (
        /^(tests?|testing|__pycache__)$/.test(entry) ||
        /^(test_.*|.*_test|conftest|setup)\.py$/.test(entry)
      )
        continue;
      walk(path.join(relative, entry));
    }
  };
  for (const p of pkg.sourcePaths) walk(p);
  return files;
}

function listSites(repo: string, files: string[]): MutationSite[] {
  const out = sh(
    path.join(venvBin(), 'python'),
    [path.join(TASKBUILDER_DIR, 'mutate.py'), 'sites', ...files],
    repo,
  );
  return JSON.parse(out) as MutationSite[];
}

function applySite(original: Buffer, site: MutationSite): Buffer {
  return Buffer.concat([
    original.subarray(0, site.start),
    Buffer.from(site.replacement),
    original.subarray(site.end),
  ]);
}

const siteHash = (pkg: SuitePackage, site: MutationSite) =>
  createHash('sha256')
    .update(`${pkg.name}:${site.file}:${site.start}:${site.end}:${site.replacement}`)
    .digest('hex');

async function runTests(
  sandbox: Sandbox,
  command: string,
): Promise<{ statuses: TestStatusMap; result: ExecResult }> {
  const result = await sandbox.exec(command, {
    timeoutSec: TEST_TIMEOUT_SEC,
    outputLimitBytes: 32 * 1024 * 1024,
  });
  return { statuses: result.timedOut ? {} : parsePytestLog(`${result.stdout}\n${result.stderr}`), result };
}

interface PackageBuild {
  instances: TaskInstance[];
  tried: number;
  refused: Record<string, number>;
}

/** Builds one package's tasks. */
async function buildPackage(
  pkg: SuitePackage,
  spec: SuiteSpec,
  outDir: string,
  backend: LocalSandboxBackend,
  log: Log,
  specDir: string,
  verbose: boolean,
): Promise<PackageBuild> {
  const repo = path.join(outDir, 'repos', pkg.name);
  fs.rmSync(repo, { recursive: true, force: true });
  fs.mkdirSync(repo, { recursive: true });
  if (pkg.localPath) {
    fs.cpSync(path.resolve(specDir, pkg.localPath), repo, { recursive: true });
  } else {
    const tarball = fetchSdist({ ...pkg, sha256: pkg.sha256! });
    sh('tar', ['-xf', tarball, '-C', repo, '--strip-components=1', '--no-same-owner'], repo);
  }
  git(repo, 'init', '--quiet', '--initial-branch=upstream');
  git(repo, 'config', 'core.autocrlf', 'false');
  // --force: the sdist is the source of truth, files its .gitignore names included (isodate's generated
  // version.py, for one).
  git(repo, 'add', '--force', '-A');
  git(repo, 'commit', '--quiet', '--no-gpg-sign', '-m', `${pkg.name} ${pkg.version} from PyPI`);
  const upstream = git(repo, 'rev-parse', 'HEAD').trim();
  const testCommand = packageTestCommand(pkg);
  const limits = sandboxLimitsSchema.parse({});
  const sandboxId = `build-${pkg.name}-${process.pid}`;
  const sandbox = await backend.create({
    sandboxId,
    instanceId: pkg.name,
    source: { kind: 'git', path: repo },
    baseCommit: upstream,
    limits,
  });
  try {
    // Baseline, traced: which tests call which function.
    const traced = await runTests(
      sandbox,
      `ENTROPO_TRACE_OUT=.entropo-trace.json ${packageTestCommand(pkg, { pythonPathExtra: TASKBUILDER_DIR, args: ['-rA', '-p', 'entropo_trace'] })}`,
    );
    // Twice more, plainly, as the mutated runs will be: what differs between the two is unstable.
    const plainA = (await runTests(sandbox, testCommand)).statuses;
    const plainB = (await runTests(sandbox, testCommand)).statuses;
    const unstable = unstableTestFunctions(plainA, plainB);
    const baseline = withoutUnstable(plainA, unstable);
    const passing = Object.values(baseline).filter((s) => s === 'PASSED').length;
    if (passing === 0) {
      throw new Error(
        `${pkg.name}: no test passes on the unmodified package:\n${traced.result.stdout.slice(-3000)}`,
      );
    }
    const traceFile = await sandbox.readFile('.entropo-trace.json').catch(() => {
      throw new Error(
        `${pkg.name}: the test tracer wrote nothing (is ${TASKBUILDER_DIR} visible in the sandbox?):\n` +
          `${traced.result.stdout.slice(-2000)}${traced.result.stderr.slice(-2000)}`,
      );
    });
    const trace = JSON.parse(traceFile.toString()) as Record<string, string[]>;
    await sandbox.exec('rm -f .entropo-trace.json', { timeoutSec: 10, outputLimitBytes: 4096 });
    // Who calls what: sites in functions no test calls are skipped, and a broken test is related to the
    // bug only when it calls the mutated function.
    const callers = new Map<string, Set<string>>();
    for (const [test, functions] of Object.entries(trace)) {
      for (const fn of functions) callers.set(fn, (callers.get(fn) ?? new Set<string>()).add(test));
    }
    const sites = listSites(repo, sourceFiles(repo, pkg)).filter((s) =>
      callers.has(`${s.file}::${s.function}`),
    );
    const order = seededShuffle(sites, spec.seed + spec.packages.indexOf(pkg) * 7919);
    log(
      `${pkg.name} ${pkg.version}: ${passing} tests pass` +
        (unstable.size ? ` (${unstable.size} test function(s) with unstable ids or outcomes left out)` : '') +
        `; ${sites.length} mutation sites in tested functions`,
    );

    const build: PackageBuild = { instances: [], tried: 0, refused: {} };
    const refuse = (reason: string) => {
      build.refused[reason] = (build.refused[reason] ?? 0) + 1;
    };
    const usedFunctions = new Set<string>();
    for (const site of order) {
      if (build.instances.length >= pkg.tasks || build.tried >= pkg.maxTries) break;
      const fnKey = `${site.file}::${site.function}`;
      if (usedFunctions.has(fnKey)) continue; // one task per function: a suite of distinct bugs
      build.tried++;
      if (!verbose && build.tried % PROGRESS_EVERY === 0) {
        log(`  ${pkg.name}: ${build.tried} mutations tried, ${build.instances.length} of ${pkg.tasks} kept`);
      }
      const original = await sandbox.readFile(site.file);
      await sandbox.writeFile(site.file, applySite(original, site));
      const mutatedRun = await runTests(sandbox, testCommand);
      await sandbox.writeFile(site.file, original);
      if (mutatedRun.result.timedOut) {
        refuse('tests hang');
        continue;
      }
      const verdict = judgeMutation({
        baseline,
        mutated: withoutUnstable(mutatedRun.statuses, unstable),
        covering: callers.get(fnKey)!,
      });
      if (!verdict.keep) {
        refuse(verdict.broken.length === 0 ? 'breaks no test' : 'breaks unrelated tests');
        if (verbose) {
          log(
            `  [${build.tried}] refused ${site.kind} in ${site.function} (${site.file}:${site.line}): ${verdict.reason}`,
          );
        }
        continue;
      }
      const instance = await makeInstance(pkg, repo, site, verdict.broken, unstable, backend, limits);
      if (!instance) {
        refuse('unstable when re-run from the base commit');
        continue;
      }
      usedFunctions.add(fnKey);
      build.instances.push(instance);
      log(
        `  kept ${instance.instance_id}: ${site.description} in ${site.function} (${instance.FAIL_TO_PASS.length} FAIL_TO_PASS)`,
      );
    }
    if (build.instances.length < pkg.tasks) {
      log(`  ${pkg.name}: only ${build.instances.length} of ${pkg.tasks} tasks after ${build.tried} tries`);
    }
    return build;
  } finally {
    await backend.destroy(sandboxId);
  }
}

/** Commits the base of one task and checks it from there, as grading will see it. */
async function makeInstance(
  pkg: SuitePackage,
  repo: string,
  site: MutationSite,
  broken: string[],
  unstable: ReadonlySet<string>,
  backend: LocalSandboxBackend,
  limits: SandboxLimits,
): Promise<TaskInstance | null> {
  const instanceId = proceduralInstanceId(pkg.name, site.kind, siteHash(pkg, site));
  git(repo, 'checkout', '--quiet', '--force', 'upstream');
  git(repo, 'checkout', '--quiet', '--orphan', instanceId);
  const sourcePath = path.join(repo, site.file);
  const original = fs.readFileSync(sourcePath);
  fs.writeFileSync(sourcePath, applySite(original, site));
  const tests = testFunctionsOf(broken);
  const originalTests = new Map<string, Buffer>();
  for (const [file, names] of tests) {
    const absolute = path.join(repo, file);
    originalTests.set(file, fs.readFileSync(absolute));
    const stripped = execFileSync(
      path.join(venvBin(), 'python'),
      [path.join(TASKBUILDER_DIR, 'mutate.py'), 'remove-tests', absolute, ...names],
      {
        maxBuffer: 64 * 1024 * 1024,
      },
    );
    fs.writeFileSync(absolute, stripped);
  }
  git(repo, 'add', '-A');
  git(repo, 'commit', '--quiet', '--no-gpg-sign', '-m', `${pkg.name} ${pkg.version}`);
  const baseCommit = git(repo, 'rev-parse', 'HEAD').trim();
  fs.writeFileSync(sourcePath, original);
  const patch = git(repo, 'diff', '--no-color', 'HEAD', '--', site.file);
  git(repo, 'checkout', '--quiet', '--', site.file);
  for (const [file, content] of originalTests) fs.writeFileSync(path.join(repo, file), content);
  const testPatch = git(repo, 'diff', '--no-color', 'HEAD', '--', ...originalTests.keys());
  git(repo, 'checkout', '--quiet', '--force', 'upstream');

  // From the base commit, as grading does: test patch → before; gold patch → after.
  const sandboxId = `check-${instanceId}-${process.pid}`.slice(0, 200);
  const sandbox = await backend.create({
    sandboxId,
    instanceId,
    source: { kind: 'git', path: repo },
    baseCommit,
    limits,
  });
  try {
    const opts = { timeoutSec: 60, outputLimitBytes: 1024 * 1024 };
    const testPatchFile = await sandbox.writeTmpFile('test.patch', testPatch);
    const goldFile = await sandbox.writeTmpFile('gold.patch', patch);
    if ((await sandbox.exec(`git apply ${testPatchFile}`, opts)).exitCode !== 0) return null;
    const testCommand = packageTestCommand(pkg);
    const before = await runTests(sandbox, testCommand);
    const beforeStatuses = withoutUnstable(before.statuses, unstable);
    const failingTest = broken[0]!;
    const traceback = await sandbox.exec(
      packageTestCommand(pkg, {
        args: ['-q', '--tb=native'],
        tests: [`'${failingTest.replace(/'/g, `'\\''`)}'`],
      }),
      opts,
    );
    if ((await sandbox.exec(`git apply ${goldFile}`, opts)).exitCode !== 0) return null;
    const after = await runTests(sandbox, testCommand);
    const afterStatuses = withoutUnstable(after.statuses, unstable);
    const passedAfter = Object.keys(afterStatuses)
      .filter((t) => afterStatuses[t] === 'PASSED')
      .sort();
    const failToPass = passedAfter.filter((t) => beforeStatuses[t] !== 'PASSED');
    const passToPass = passedAfter.filter((t) => beforeStatuses[t] === 'PASSED');
    if (failToPass.length === 0 || before.result.timedOut || after.result.timedOut) return null;
    return {
      instance_id: instanceId,
      repo: pkg.repo,
      base_commit: baseCommit,
      patch,
      test_patch: testPatch,
      problem_statement: writeProblemStatement({
        packageName: pkg.name,
        functionName: site.function,
        modulePath: site.file,
        testId: failingTest,
        log: `${traceback.stdout}\n${traceback.stderr}`,
        repoRoot: sandbox.repoPath,
      }),
      FAIL_TO_PASS: failToPass,
      PASS_TO_PASS: passToPass,
      version: pkg.version,
      created_at: COMMIT_ENV.GIT_COMMITTER_DATE,
      source: { kind: 'git', path: `repos/${pkg.name}` },
      test_command: testCommand,
      log_parser: 'pytest',
    };
  } finally {
    await backend.destroy(sandboxId);
  }
}

/** Builds a whole suite into `outDir`; returns its manifest (also written there). */
export async function buildSuite(
  spec: SuiteSpec,
  outDir: string,
  log: Log = console.log,
  /** Where the spec file lives: local source paths resolve against it. */
  specDir: string = process.cwd(),
  /** Log every refused mutation with its reason (otherwise counts, in the manifest and as progress). */
  options: { verbose?: boolean } = {},
): Promise<SuiteManifest> {
  const started = performance.now();
  fs.mkdirSync(outDir, { recursive: true });
  fs.rmSync(path.join(outDir, 'repos'), { recursive: true, force: true });
  // The tracer the baseline run loads lives in the project checkout, which sandboxes do not see: show its
  // directory (read-only) to the builder's sandboxes.
  const backend = new LocalSandboxBackend(sandboxesDir(), log, true, [TASKBUILDER_DIR]);
  const instances: TaskInstance[] = [];
  const packages: NonNullable<SuiteManifest['packages']> = [];
  let tried = 0;
  const refused: Record<string, number> = {};
  for (const pkg of spec.packages) {
    const build = await buildPackage(pkg, spec, outDir, backend, log, specDir, options.verbose ?? false);
    instances.push(...build.instances);
    tried += build.tried;
    for (const [reason, n] of Object.entries(build.refused)) refused[reason] = (refused[reason] ?? 0) + n;
    packages.push({
      name: pkg.name,
      version: pkg.version,
      ...(pkg.sha256 ? { sha256: pkg.sha256 } : {}),
      instances: build.instances.length,
    });
  }
  const manifest = writeSuite(outDir, instances, {
    name: spec.name,
    description: spec.description,
    source: 'procedural',
    createdAt: new Date().toISOString(),
    seed: spec.seed,
    packages,
    ...(spec.heldOut ? { heldOut: true } : {}),
    build: {
      tried,
      kept: instances.length,
      refused,
      seconds: Math.round((performance.now() - started) / 100) / 10,
    },
  });
  log(
    `${spec.name}: ${instances.length} tasks from ${packages.length} packages; ${tried} mutations tried ` +
      `(yield ${tried ? ((instances.length / tried) * 100).toFixed(0) : 0}%) in ${manifest.build!.seconds} s`,
  );
  return manifest;
}
