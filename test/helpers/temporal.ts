import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { PROJECT_ROOT } from '../../activities/paths';
import type { WorkerRole } from '../../domain/taskQueues';
import { type DevServer, DevServerPortTakenError, freePort, startDevServer } from '../../infra/devServer';
import { createWorkerGroup, type WorkerGroup } from '../../workers/worker';

/**
 * A real Temporal dev server (the pinned binary from .venv, through our own launcher) on a free port with
 * its own SQLite file, plus a client. One per test file.
 */
export interface TestTemporal {
  server: DevServer;
  address: string;
  client: Client;
  close(): Promise<void>;
}

let runtimeInstalled = false;
export function quietRuntime(): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  Runtime.install({
    logger: new DefaultLogger('WARN', (e) => {
      if (!/^No (workflows|Nexus)/.test(e.message))
        process.stderr.write(`[temporal ${e.level}] ${e.message}\n`);
    }),
  });
}

export async function startTestTemporal(home: string): Promise<TestTemporal> {
  quietRuntime();
  const server = await startOnFreePort(path.join(home, 'temporal.db'));
  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection });
  return {
    server,
    address: server.address,
    client,
    async close() {
      await connection.close();
      await server.stop();
    },
  };
}

/**
 * A port can still be taken between choosing it and the server's bind (the server's own internal ports are
 * chosen by the kernel); then the launch is repeated on another free port.
 */
async function startOnFreePort(dbFile: string, attempts = 3): Promise<DevServer> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startDevServer({ port: await freePort(), headless: true, dbFile });
    } catch (error) {
      if (!(error instanceof DevServerPortTakenError) || attempt >= attempts) throw error;
    }
  }
}

/** In-process workers (cpu + sandbox by default) for one queue prefix. */
export async function startTestWorkers(
  address: string,
  queuePrefix: string,
  roles: readonly WorkerRole[] = ['cpu', 'sandbox'],
) {
  const connection = await NativeConnection.connect({ address });
  const group: WorkerGroup = await createWorkerGroup({
    connection,
    roles,
    queuePrefix,
    address,
    shutdownGraceTime: '5 seconds',
  });
  const running = group.run();
  return {
    group,
    async stop() {
      group.shutdown();
      await running;
      await connection.close();
    },
  };
}

export function sandboxDirs(home: string): string[] {
  try {
    return fs.readdirSync(path.join(home, 'sandboxes'));
  } catch {
    return [];
  }
}

/** A real `entropo worker` process (cpu + sandbox roles), as a user would run it; resolves once it is ready. */
export function startWorkerProcess(
  address: string,
  options: { queuePrefix: string; home: string; started: ChildProcess[]; roles?: readonly WorkerRole[] },
): Promise<ChildProcess> {
  const roles = options.roles ?? ['cpu', 'sandbox'];
  const child = spawn(path.join(PROJECT_ROOT, 'bin', 'entropo'), ['worker', '--role', ...roles], {
    env: {
      ...process.env,
      TEMPORAL_ADDRESS: address,
      ENTROPO_TASK_QUEUE_PREFIX: options.queuePrefix,
      ENTROPO_HOME: options.home,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  options.started.push(child);
  return new Promise((resolve, reject) => {
    let err = '';
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.includes('worker ready')) resolve(child);
    });
    child.once('exit', (code) => reject(new Error(`worker exited with ${code}: ${err}`)));
  });
}
