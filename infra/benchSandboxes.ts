/**
 * Sandbox backends benchmark (`npm run bench:sandbox`): local bubblewrap vs docker, against plain process
 * spawns on the host, in one process with the rounds interleaved (these machines are noisy):
 *   1. latency of a trivial exec, a 1 MB file write and a `git diff` (working-tree diff with a new file),
 *      median and p95, as a ratio to the same operation done on the host without a sandbox; the exec also
 *      without the sandbox's exec server (a bwrap namespace or a `docker exec` per command, as before it);
 *   2. sandbox create + start + remove;
 *   3. concurrency: K sandboxes each running trivial execs back to back; the K at which the median exec
 *      latency doubles from K = 1.
 * Needs a Docker engine with the fixture images (`entropo tasks images tasks/fixtures/instances.jsonl`).
 * Prints Markdown for BENCHMARKS.md. BENCH_ROUNDS (default 60), BENCH_CREATE_ROUNDS (10) and
 * BENCH_MAX_CONCURRENCY (32) size it.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DockerSandboxBackend } from '../activities/dockerSandbox';
import { LocalSandboxBackend } from '../activities/localSandbox';
import { PROJECT_ROOT } from '../activities/paths';
import { readWorkingTreeDiff, type Sandbox } from '../activities/sandboxBackend';
import { SandboxPool } from '../activities/sandboxPool';
import { parseInstancesOrThrow, type TaskInstance, taskImageName } from '../domain/instance';
import { type SandboxBackendName, sandboxLimitsSchema } from '../domain/runConfig';
import { buildTaskImage } from './buildImages';

const home = fs.mkdtempSync(path.join(os.tmpdir(), 'entropo-bench-sbx-'));
process.env.ENTROPO_HOME = home;
const OPTS = { timeoutSec: 60, outputLimitBytes: 4 * 1024 * 1024 };

function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await fn();
  return performance.now() - started;
}

function spawnOnHost(command: string, cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', command], { cwd, stdio: 'ignore' });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${command}: exit ${code}`))));
  });
}

function loadInstance(): TaskInstance {
  const file = path.join(PROJECT_ROOT, 'tasks/fixtures/instances.jsonl');
  const instance = parseInstancesOrThrow(fs.readFileSync(file, 'utf8'), file)[0]!;
  const source = instance.source as { kind: 'git'; path: string };
  return { ...instance, source: { kind: 'git', path: path.resolve(path.dirname(file), source.path) } };
}

async function main() {
  const rounds = Number(process.env.BENCH_ROUNDS ?? 60);
  const createRounds = Number(process.env.BENCH_CREATE_ROUNDS ?? 10);
  const maxConcurrency = Number(process.env.BENCH_MAX_CONCURRENCY ?? 32);
  const instance = loadInstance();
  await buildTaskImage(instance, { log: () => {} });
  const pool = new SandboxPool(new LocalSandboxBackend(path.join(home, 'sandboxes')));
  let counter = 0;
  const create = (backend: SandboxBackendName) =>
    pool.create(backend, {
      sandboxId: `bench-${backend}-${counter++}`,
      instanceId: instance.instance_id,
      source: instance.source,
      baseCommit: instance.base_commit,
      image: taskImageName(instance),
      limits: sandboxLimitsSchema.parse({}),
    });

  // A host copy of the repository: the baseline of file writes and diffs.
  const hostRepo = path.join(home, 'host-repo');
  const { path: repoSource } = instance.source as { path: string };
  await spawnOnHost(`git clone -q ${repoSource} ${hostRepo}`, home);
  await spawnOnHost(`git checkout -q ${instance.base_commit}`, hostRepo);
  const megabyte = Buffer.alloc(1024 * 1024, 'x');
  const diffCommand = (dir: string) =>
    `cd ${dir} && export GIT_INDEX_FILE=/tmp/bench-index-$$ && git read-tree ${instance.base_commit} && git add -A && git diff --cached --binary ${instance.base_commit} > /dev/null; rm -f $GIT_INDEX_FILE`;

  const sandboxes: Record<SandboxBackendName, Sandbox> = {
    local: await create('local'),
    docker: await create('docker'),
  };
  // The same local sandbox without cgroup limits (rlimits only), to show what joining a cgroup costs.
  const unlimitedBackend = new LocalSandboxBackend(path.join(home, 'sandboxes-nocg'), () => {}, false);
  const unlimited = await unlimitedBackend.create({
    sandboxId: 'bench-nocg',
    instanceId: instance.instance_id,
    source: instance.source,
    baseCommit: instance.base_commit,
    limits: sandboxLimitsSchema.parse({}),
  });
  // The same sandboxes without the exec server: a new namespace / a `docker exec` per command.
  const perCommandLocalBackend = new LocalSandboxBackend(
    path.join(home, 'sandboxes-percmd'),
    () => {},
    true,
    [],
    false,
  );
  const perCommandDockerBackend = new DockerSandboxBackend({ execServer: false });
  const perCommand: Record<SandboxBackendName, Sandbox> = {
    local: await perCommandLocalBackend.create({
      sandboxId: 'bench-percmd-local',
      instanceId: instance.instance_id,
      source: instance.source,
      baseCommit: instance.base_commit,
      limits: sandboxLimitsSchema.parse({}),
    }),
    docker: await perCommandDockerBackend.create({
      sandboxId: 'bench-percmd-docker',
      instanceId: instance.instance_id,
      baseCommit: instance.base_commit,
      image: taskImageName(instance),
      limits: sandboxLimitsSchema.parse({}),
    }),
  };
  for (const s of Object.values(sandboxes)) {
    await s.exec("echo '# edit' >> inflection/__init__.py && echo new > new_file.txt", OPTS);
  }
  await spawnOnHost("echo '# edit' >> inflection/__init__.py && echo new > new_file.txt", hostRepo);

  const samples: Record<string, number[]> = {};
  const add = (name: string, ms: number) => {
    samples[name] = [...(samples[name] ?? []), ms];
  };
  for (let i = 0; i < rounds; i++) {
    add('exec:host', await timed(() => spawnOnHost('echo hi', hostRepo)));
    add('write:host', await timed(() => fs.promises.writeFile(path.join(hostRepo, 'blob.bin'), megabyte)));
    add('diff:host', await timed(() => spawnOnHost(diffCommand(hostRepo), hostRepo)));
    add('exec:local-nocg', await timed(() => unlimited.exec('echo hi', OPTS)));
    for (const backend of ['local', 'docker'] as const) {
      const s = sandboxes[backend];
      add(`exec:${backend}`, await timed(() => s.exec('echo hi', OPTS)));
      add(`exec:${backend}-percmd`, await timed(() => perCommand[backend].exec('echo hi', OPTS)));
      add(`write:${backend}`, await timed(() => s.writeFile('blob.bin', megabyte)));
      add(`diff:${backend}`, await timed(() => readWorkingTreeDiff(s, instance.base_commit, OPTS)));
    }
  }
  for (const backend of ['local', 'docker'] as const) await pool.destroy(sandboxes[backend].id);
  await unlimitedBackend.destroy('bench-nocg');
  await perCommandLocalBackend.destroy('bench-percmd-local');
  await perCommandDockerBackend.destroy('bench-percmd-docker');
  // Local execs alone, back to back and with idle gaps (no docker traffic in between).
  const alone = await create('local');
  for (let i = 0; i < rounds; i++) {
    add('exec:local-alone', await timed(() => alone.exec('echo hi', OPTS)));
    await new Promise((r) => setTimeout(r, 30));
    add('exec:local-alone-idle', await timed(() => alone.exec('echo hi', OPTS)));
  }
  await pool.destroy(alone.id);

  for (let i = 0; i < createRounds; i++) {
    for (const backend of ['local', 'docker'] as const) {
      add(
        `lifecycle:${backend}`,
        await timed(async () => {
          const s = await create(backend);
          await pool.destroy(s.id);
        }),
      );
    }
  }

  // Concurrency, two ways: K sandboxes all running `echo hi` back to back (busy), and K sandboxes held
  // open while one of them runs `echo hi` (idle: what holding sandboxes costs the one that works).
  type Point = { k: number; median: number; p95: number };
  const concurrency: Record<string, Point[]> = {};
  for (const backend of ['local', 'docker'] as const) {
    for (const mode of ['busy', 'idle'] as const) {
      const points: Point[] = [];
      concurrency[`${backend}:${mode}`] = points;
      for (let k = 1; k <= maxConcurrency; k *= 2) {
        const group = await Promise.all(Array.from({ length: k }, () => create(backend)));
        const latencies: number[] = [];
        const workers = mode === 'busy' ? group : group.slice(0, 1);
        const each = mode === 'busy' ? Math.max(10, Math.ceil(80 / k)) : 30;
        await Promise.all(
          workers.map(async (s) => {
            for (let i = 0; i < each; i++) latencies.push(await timed(() => s.exec('echo hi', OPTS)));
          }),
        );
        points.push({ k, median: quantile(latencies, 0.5), p95: quantile(latencies, 0.95) });
        await Promise.all(group.map((s) => pool.destroy(s.id)));
        if (quantile(latencies, 0.5) > 4 * points[0]!.median) break;
      }
    }
  }

  const med = (name: string) => quantile(samples[name]!, 0.5);
  const row = (label: string, name: string, base: string) =>
    `| ${label} | ${med(name).toFixed(1)} | ${quantile(samples[name]!, 0.95).toFixed(1)} | ${(med(name) / med(base)).toFixed(2)}× |`;
  console.log(
    `machine: ${os.cpus().length} × ${os.cpus()[0]?.model}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${os.platform()} ${os.release()}`,
  );
  console.log(
    `rounds: ${rounds} per operation (interleaved host / local / docker), ${createRounds} lifecycles each\n`,
  );
  console.log('| operation | median ms | p95 ms | ratio to the host baseline |');
  console.log('| --- | --- | --- | --- |');
  for (const [op, label] of [
    ['exec', 'trivial exec (`echo hi`)'],
    ['write', '1 MB file write'],
    ['diff', '`git diff` of the working tree (modified + new file)'],
  ] as const) {
    console.log(row(`${label}: host (spawn / fs.writeFile)`, `${op}:host`, `${op}:host`));
    console.log(row(`${label}: local bwrap`, `${op}:local`, `${op}:host`));
    if (op === 'exec') {
      console.log(
        row(
          `${label}: local bwrap, a namespace per command (no exec server)`,
          'exec:local-percmd',
          'exec:host',
        ),
      );
      console.log(row(`${label}: local bwrap without cgroup limits`, 'exec:local-nocg', 'exec:host'));
      console.log(
        row(`${label}: local bwrap, no docker traffic, back to back`, 'exec:local-alone', 'exec:host'),
      );
      console.log(
        row(
          `${label}: local bwrap, no docker traffic, 30 ms idle before`,
          'exec:local-alone-idle',
          'exec:host',
        ),
      );
    }
    console.log(row(`${label}: docker`, `${op}:docker`, `${op}:host`));
    if (op === 'exec') {
      console.log(
        row(
          `${label}: docker, a docker exec per command (no exec server)`,
          'exec:docker-percmd',
          'exec:host',
        ),
      );
    }
  }
  console.log(row('sandbox create + start + remove: local', 'lifecycle:local', 'lifecycle:local'));
  console.log(row('sandbox create + start + remove: docker', 'lifecycle:docker', 'lifecycle:local'));
  console.log('\n| backend | sandboxes | K | median exec ms | p95 exec ms | median / K=1 |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const [key, points] of Object.entries(concurrency)) {
    const [backend, mode] = key.split(':');
    const base = points[0]!.median;
    for (const c of points) {
      console.log(
        `| ${backend} | ${mode} | ${c.k} | ${c.median.toFixed(1)} | ${c.p95.toFixed(1)} | ${(c.median / base).toFixed(2)}× |`,
      );
    }
    const doubled = points.find((c) => c.median >= 2 * base);
    console.log(
      `| ${backend} | ${mode} | latency doubles at K = ${doubled?.k ?? `> ${points.at(-1)!.k}`} | | | |`,
    );
  }
  await pool.destroyAll();
  fs.rmSync(home, { recursive: true, force: true });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
