import { execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger, NativeConnection, Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createModelServerActivities,
  type EnsureServerRequest,
  ModelServers,
  type ServerHandle,
} from '../../activities/modelServer';
import { PROJECT_ROOT, venvBin } from '../../activities/paths';
import { gpuDeviceQueue, roleQueue } from '../../domain/taskQueues';
import { freePort } from '../../infra/devServer';
import { createWorkerGroup } from '../../workers/worker';
import { runCli } from '../helpers/cli';
import { isolatedHome } from '../helpers/env';
import { startTestTemporal, type TestTemporal } from '../helpers/temporal';

/**
 * Model servers held by a gpu worker: the real engine server with the real SmolLM2-135M (started, re-used,
 * restarted after it dies, adapters hot-loaded, stopped), command servers that never get healthy or exit,
 * and the gpu worker's device queues on a real Temporal dev server.
 */

const home = isolatedHome('model-server');
const servers = new ModelServers();
const activities = createModelServerActivities(servers, 'cpu');
let adapterDir: string;

/** An untrained LoRA adapter of the converted SmolLM2 (also converts the model into this home once). */
beforeAll(async () => {
  adapterDir = path.join(home, 'adapters', 'sft');
  const script = [
    'import sys, torch',
    'from peft import LoraConfig, get_peft_model',
    'from entropo_engine.models import load_causal_lm, resolve_model_dir',
    'model = load_causal_lm(resolve_model_dir("smollm2-135m"), torch.device("cpu"), torch.float32)',
    'lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")',
    'get_peft_model(model, lora).save_pretrained(sys.argv[1])',
  ].join('\n');
  await promisify(execFile)(path.join(venvBin(), 'python'), ['-c', script, adapterDir], {
    cwd: path.join(PROJECT_ROOT, 'engine'),
    env: { ...process.env, ENTROPO_HOME: home },
  });
});
afterAll(async () => {
  await servers.stopAll();
});

/** Running, not a zombie: an orphan's zombie may stay until init reaps it, and `kill -0` still reaches it. */
function isAlive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** The program a pid runs now (after any exec). */
function commandOf(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return '';
  }
}

async function waitUntilDead(pid: number): Promise<void> {
  while (isAlive(pid)) await new Promise((r) => setTimeout(r, 100));
}

async function failureOf(promise: Promise<unknown>): Promise<ApplicationFailure> {
  const failure = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(failure).toBeInstanceOf(ApplicationFailure);
  return failure as ApplicationFailure;
}

/** How many requests of a kind the managed server under `key` logged (its access log, since its last start). */
function serverRequests(key: string, request: string): number {
  const dir = fs
    .readdirSync(path.join(home, 'model-servers'))
    .find((d) => d.startsWith(`${key.replace('/', '_')}-`));
  const log = fs.readFileSync(path.join(home, 'model-servers', dir!, 'server.log'), 'utf8');
  return log.split('\n').filter((line) => line.includes(request)).length;
}

async function servedModels(handle: ServerHandle): Promise<{ id: string; root: string }[]> {
  const response = await fetch(`${handle.baseUrl}/models`);
  expect(response.status).toBe(200);
  return ((await response.json()) as { data: { id: string; root: string }[] }).data;
}

/** A mock activity context (heartbeats, cancellation) that keeps the SDK's failure warnings out of the output. */
function activityEnv(): MockActivityEnvironment {
  return new MockActivityEnvironment(undefined, { logger: new DefaultLogger('ERROR') });
}

function ensure(env: MockActivityEnvironment, request: EnsureServerRequest, on = activities) {
  return env.run(on.ensureModelServer, request) as Promise<ServerHandle>;
}

const ENGINE: EnsureServerRequest = {
  key: 'run-1/rollouts',
  spec: { kind: 'engine', model: 'smollm2-135m' },
};

describe('the engine model server', () => {
  it('starts once per key, heartbeating while the model loads; a live server is re-used, a dead one restarted', async () => {
    const env = activityEnv();
    let heartbeats = 0;
    env.on('heartbeat', () => heartbeats++);
    const first = await ensure(env, ENGINE);
    expect(first).toMatchObject({ key: ENGINE.key, model: 'smollm2-135m', adapters: [] });
    expect(first.baseUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1$/);
    expect(heartbeats).toBeGreaterThan(0);
    expect(isAlive(first.pid!)).toBe(true);
    expect((await servedModels(first)).map((m) => m.id)).toEqual(['smollm2-135m']);
    expect(servers.liveCount('cpu')).toBe(1);

    const again = await ensure(activityEnv(), ENGINE);
    expect(again).toEqual(first);

    process.kill(first.pid!, 'SIGKILL');
    await waitUntilDead(first.pid!);
    const restarted = await ensure(activityEnv(), ENGINE);
    expect(restarted.pid).not.toBe(first.pid);
    expect(isAlive(restarted.pid!)).toBe(true);
    expect((await fetch(restarted.baseUrl.replace(/\/v1$/, '/health'))).status).toBe(200);
  });

  it('hot-loads adapters once (same name and path is a no-op), from relative paths too, replaces one from a new path, and names a bad one', async () => {
    const env = activityEnv();
    const handle = await ensure(env, ENGINE);
    await env.run(activities.loadAdapter, { key: ENGINE.key, name: 'sft', path: adapterDir });
    await env.run(activities.loadAdapter, { key: ENGINE.key, name: 'sft', path: adapterDir });
    const relative = path.relative(process.cwd(), adapterDir);
    const withAdapters = await ensure(env, {
      ...ENGINE,
      adapters: [
        { name: 'sft', path: adapterDir },
        { name: 'sft-copy', path: relative },
      ],
    });
    expect(withAdapters.pid).toBe(handle.pid);
    expect(withAdapters.adapters).toEqual(['sft', 'sft-copy']);
    expect(await servedModels(handle)).toEqual([
      expect.objectContaining({ id: 'smollm2-135m' }),
      expect.objectContaining({ id: 'sft', root: adapterDir }),
      expect.objectContaining({ id: 'sft-copy', root: adapterDir }),
    ]);
    // Loaded once each: the repeated loads never reached the server (its access log).
    expect(serverRequests(ENGINE.key, 'POST /v1/load_lora_adapter')).toBe(2);
    expect(serverRequests(ENGINE.key, 'POST /v1/unload_lora_adapter')).toBe(0);

    // The same name from another path (a newer checkpoint) replaces the adapter.
    const newer = path.join(home, 'adapters', 'sft-newer');
    fs.cpSync(adapterDir, newer, { recursive: true });
    await env.run(activities.loadAdapter, { key: ENGINE.key, name: 'sft-copy', path: newer });
    expect(await servedModels(handle)).toContainEqual(
      expect.objectContaining({ id: 'sft-copy', root: newer }),
    );
    expect(serverRequests(ENGINE.key, 'POST /v1/unload_lora_adapter')).toBe(1);

    const bad = await failureOf(
      env.run(activities.loadAdapter, { key: ENGINE.key, name: 'broken', path: path.join(home, 'missing') }),
    );
    expect(bad.type).toBe('ModelServerAdapterFailed');
    expect(bad.nonRetryable).toBe(true);
    expect(bad.message).toContain('missing');

    const unknown = await failureOf(
      env.run(activities.loadAdapter, { key: 'no-such-server', name: 'sft', path: adapterDir }),
    );
    expect(unknown.type).toBe('ModelServerNotFound');
  });

  it('checks an external server without starting one', async () => {
    const env = activityEnv();
    const managed = await ensure(env, ENGINE);
    const external = await ensure(env, {
      key: 'external',
      spec: { kind: 'external', baseUrl: `${managed.baseUrl}/`, model: 'smollm2-135m' },
    });
    expect(external).toEqual({
      key: 'external',
      baseUrl: managed.baseUrl,
      model: 'smollm2-135m',
      adapters: [],
      pid: null,
    });
    await env.run(activities.stopModelServer, { key: 'external' });
    expect(isAlive(managed.pid!)).toBe(true); // not ours to stop
  });

  it('stops a server, and stopping again is fine', async () => {
    const env = activityEnv();
    const handle = await ensure(env, ENGINE);
    await env.run(activities.stopModelServer, { key: ENGINE.key });
    expect(isAlive(handle.pid!)).toBe(false);
    expect(servers.liveCount('cpu')).toBe(0);
    await env.run(activities.stopModelServer, { key: ENGINE.key });
  });
});

describe('command model servers', () => {
  it('fails a server that never gets healthy with ModelServerUnhealthy, its log tail, and kills it', async () => {
    const port = await freePort();
    const command = ['sh', '-c', 'echo "warming up on [$CUDA_VISIBLE_DEVICES]"; exec sleep 1000'];
    const failure = await failureOf(
      ensure(
        activityEnv(),
        {
          key: 'run-1/verifier',
          spec: {
            kind: 'command',
            command,
            baseUrl: `http://127.0.0.1:${port}/v1`,
            model: 'm',
            startupTimeoutSec: 2,
          },
        },
        createModelServerActivities(servers, '3'),
      ),
    );
    expect(failure.type).toBe('ModelServerUnhealthy');
    expect(failure.nonRetryable).toBe(true);
    expect(failure.message).toContain('"run-1/verifier"');
    expect(failure.message).toContain('exec sleep 1000');
    expect(failure.message).toContain(`http://127.0.0.1:${port}/health`);
    expect(failure.message).toContain('warming up on [3]'); // the log tail, and the device's CUDA_VISIBLE_DEVICES
    const { pid } = failure.details![0] as { pid: number };
    expect(pid).toBeGreaterThan(0);
    expect(isAlive(pid)).toBe(false);
  });

  it('kills a managed server when its worker process is killed', async () => {
    // A worker process starting a server that takes its time to become healthy, then killed with SIGKILL:
    // no shutdown code runs, only the kernel's parent-death signal.
    const script = path.join(home, 'orphan-worker.ts');
    fs.writeFileSync(
      script,
      [
        `import { ModelServers } from ${JSON.stringify(path.join(PROJECT_ROOT, 'activities', 'modelServer.ts'))};`,
        'const servers = new ModelServers({ log: (line) => console.log(line) });',
        "void servers.ensure({ key: 'orphan', spec: { kind: 'command', command: ['sleep', '1000'], baseUrl: 'http://127.0.0.1:9/v1', model: 'm' } });",
      ].join('\n'),
    );
    const worker = spawn(
      process.execPath,
      ['--import', path.join(PROJECT_ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs'), script],
      { env: { ...process.env, ENTROPO_HOME: home }, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const serverPid = await new Promise<number>((resolve, reject) => {
      let out = '';
      worker.stdout!.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        const started = /started sleep 1000 .*\(pid (\d+)/.exec(out);
        if (started) resolve(Number(started[1]));
      });
      worker.once('exit', (code) =>
        reject(new Error(`the worker exited (${code}) before it started a server: ${out}`)),
      );
    });
    // setpriv arms the signal, then execs the server: wait for the exec, as a real server start does.
    while (commandOf(serverPid) !== 'sleep 1000') await new Promise((r) => setTimeout(r, 50));
    expect(isAlive(serverPid)).toBe(true);
    worker.kill('SIGKILL');
    await waitUntilDead(serverPid);
  });

  it('reports a server that exits before it is healthy (retryable) and one that cannot run (not)', async () => {
    const exited = await failureOf(
      ensure(activityEnv(), {
        key: 'crashes',
        spec: {
          kind: 'command',
          command: ['sh', '-c', 'echo "CUDA out of memory" >&2; exit 1'],
          baseUrl: 'http://127.0.0.1:9/v1',
          model: 'm',
        },
      }),
    );
    expect(exited.type).toBe('ModelServerExited');
    expect(exited.nonRetryable).toBe(false);
    expect(exited.message).toContain('CUDA out of memory');

    const missing = await failureOf(
      ensure(activityEnv(), {
        key: 'missing',
        spec: {
          kind: 'command',
          command: ['no-such-server-binary'],
          baseUrl: 'http://127.0.0.1:9/v1',
          model: 'm',
        },
      }),
    );
    expect(missing.type).toBe('ModelServerInvalidSpec');
    expect(missing.nonRetryable).toBe(true);
    expect(missing.message).toContain('no-such-server-binary');

    const invalid = await failureOf(
      ensure(activityEnv(), {
        key: 'bad',
        spec: { kind: 'command', command: [], baseUrl: 'localhost:8000', model: 'm' },
      }),
    );
    expect(invalid.type).toBe('ModelServerInvalidSpec');
    expect(invalid.message).toContain('spec.command');
    expect(invalid.message).toContain('spec.baseUrl');
  });
});

describe('the gpu worker', () => {
  let temporal: TestTemporal;
  beforeAll(async () => {
    temporal = await startTestTemporal(home);
  });
  afterAll(async () => {
    await temporal?.close();
  });

  async function withGpuWorker<T>(prefix: string, gpus: string[], body: () => Promise<T>): Promise<T> {
    const connection = await NativeConnection.connect({ address: temporal.address });
    const group = await createWorkerGroup({ connection, roles: ['gpu'], queuePrefix: prefix, gpus });
    const workflows = await Worker.create({
      connection,
      taskQueue: `${prefix}-test`,
      workflowsPath: path.join(__dirname, '..', 'helpers', 'gpuWorkflows.ts'),
    });
    const running = Promise.all([group.run(), workflows.run()]);
    try {
      return await body();
    } finally {
      group.shutdown();
      workflows.shutdown();
      await running;
      await connection.close();
    }
  }

  it('on a CPU-only machine serves one cpu device queue, which claimGpuDevice hands out', async () => {
    const prefix = 'gpu-cpu';
    await withGpuWorker(prefix, ['cpu'], async () => {
      const claims = await temporal.client.workflow.execute('claimDevicesWorkflow', {
        taskQueue: `${prefix}-test`,
        workflowId: 'claim-cpu',
        args: [roleQueue(prefix, 'gpu'), 2],
      });
      const cpu = { queue: gpuDeviceQueue(prefix, os.hostname(), 'cpu'), device: 'cpu', host: os.hostname() };
      expect(claims).toEqual([cpu, cpu]);
    });
  });

  it('with two GPUs hands out their queues in turn, and work on a device queue sees only that device', async () => {
    const prefix = 'gpu-two';
    await withGpuWorker(prefix, ['0', '1'], async () => {
      const claims = (await temporal.client.workflow.execute('claimDevicesWorkflow', {
        taskQueue: `${prefix}-test`,
        workflowId: 'claim-two',
        args: [roleQueue(prefix, 'gpu'), 3],
      })) as { device: string; queue: string }[];
      expect(claims.map((c) => c.device)).toEqual(['0', '1', '0']);
      expect(claims[1]!.queue).toBe(gpuDeviceQueue(prefix, os.hostname(), '1'));

      const failure = (await temporal.client.workflow.execute('unhealthyServerOnDeviceWorkflow', {
        taskQueue: `${prefix}-test`,
        workflowId: 'server-on-1',
        args: [claims[1], ['sh', '-c', 'echo "visible=[$CUDA_VISIBLE_DEVICES]"; exec sleep 1000']],
      })) as { type: string; nonRetryable: boolean; message: string };
      expect(failure.type).toBe('ModelServerUnhealthy');
      expect(failure.nonRetryable).toBe(true);
      expect(failure.message).toContain('visible=[1]');
    });
  });

  it('`entropo worker --gpus` names a bad device before it starts', async () => {
    const result = await runCli(home, 'worker', '--role', 'gpu', '--gpus', '0,gpu1');
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--gpus: "gpu1" is not a device');
  });
});
