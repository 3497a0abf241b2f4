/**
 * Task-suite benchmark (`npm run bench:tasks [spec]`, default tasks/suites/quickstart.json): builds the
 * suite from scratch into a temporary directory, validates it (`entropo tasks validate`, embedded Temporal,
 * local sandboxes), and reports per package: mutations tried and kept (yield), build seconds per kept task,
 * and, as the baseline in the same run, one plain run of the package's test suite on the host; then the
 * validation seconds per task. Prints Markdown for BENCHMARKS.md.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PROJECT_ROOT, venvBin } from '../activities/paths';
import { buildSuite } from '../activities/taskBuilder';
import { parseSuiteSpec, type SuitePackage } from '../domain/taskSuite';

const home = fs.mkdtempSync(path.join(os.tmpdir(), 'entropo-bench-tasks-'));
process.env.ENTROPO_HOME = home;

/** Seconds of one plain run of a package's own tests, on the host, in its built repository. */
function plainTestSeconds(repo: string, pkg: SuitePackage): number {
  const started = performance.now();
  execFileSync(
    path.join(venvBin(), 'python'),
    ['-m', 'pytest', '-q', '-p', 'no:cacheprovider', ...pkg.testPaths],
    {
      cwd: repo,
      env: { ...process.env, PYTHONPATH: pkg.pythonPath, PYTHONHASHSEED: '0', PYTHONDONTWRITEBYTECODE: '1' },
      stdio: 'ignore',
    },
  );
  return (performance.now() - started) / 1000;
}

async function main() {
  const specFile = process.argv[2] ?? path.join(PROJECT_ROOT, 'tasks', 'suites', 'quickstart.json');
  const spec = parseSuiteSpec(JSON.parse(fs.readFileSync(specFile, 'utf8')), specFile);
  const out = path.join(home, spec.name);
  const perPackage: { name: string; tried: number; kept: number; seconds: number }[] = [];
  let current: { name: string; started: number; tried: number } | undefined;
  const finish = () => {
    if (current) perPackage.at(-1)!.seconds = (performance.now() - current.started) / 1000;
  };
  const manifest = await buildSuite(
    spec,
    out,
    (line) => {
      const header = /^(\S+) \S+: \d+ tests pass/.exec(line);
      if (header) {
        finish();
        current = { name: header[1]!, started: performance.now(), tried: 0 };
        perPackage.push({ name: header[1]!, tried: 0, kept: 0, seconds: 0 });
      }
      if (/^\s+\[\d+\] refused|^\s+kept /.test(line)) perPackage.at(-1)!.tried++;
      if (/^\s+kept /.test(line)) perPackage.at(-1)!.kept++;
    },
    path.dirname(specFile),
  );
  finish();

  const validateStarted = performance.now();
  execFileSync(path.join(PROJECT_ROOT, 'bin', 'entropo'), ['tasks', 'validate', out, '--concurrency', '2'], {
    env: { ...process.env, ENTROPO_HOME: home, ENTROPO_TEMPORAL_PORT: String(17233 + (process.pid % 1000)) },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const validateSeconds = (performance.now() - validateStarted) / 1000;
  const validated = JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8')).validation;

  console.log(
    `machine: ${os.cpus().length} × ${os.cpus()[0]?.model}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB; suite ${spec.name}, seed ${spec.seed}\n`,
  );
  console.log(
    '| package | tried | kept | yield | build s / kept task | one plain test run s | build / plain run |',
  );
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  for (const p of perPackage) {
    const pkg = spec.packages.find((x) => x.name === p.name)!;
    const plain = plainTestSeconds(path.join(out, 'repos', p.name), pkg);
    const perTask = p.kept ? p.seconds / p.kept : Number.NaN;
    console.log(
      `| ${p.name} | ${p.tried} | ${p.kept} | ${((p.kept / Math.max(1, p.tried)) * 100).toFixed(0)}% | ${perTask.toFixed(1)} | ${plain.toFixed(2)} | ${(perTask / plain).toFixed(0)}× |`,
    );
  }
  console.log(
    `| all | ${manifest.build!.tried} | ${manifest.build!.kept} | ${((manifest.build!.kept / manifest.build!.tried) * 100).toFixed(0)}% | ${(manifest.build!.seconds / manifest.build!.kept).toFixed(1)} | | |`,
  );
  console.log(
    `\nrefused: ${JSON.stringify(manifest.build!.refused)}\n` +
      `validation (gold + empty per task, 2 at once, local sandboxes, embedded Temporal start included): ` +
      `${validated.valid}/${manifest.instanceCount} valid in ${validateSeconds.toFixed(1)} s = ` +
      `${(validateSeconds / manifest.instanceCount).toFixed(2)} s per task`,
  );
  fs.rmSync(home, { recursive: true, force: true });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
