import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../activities/paths';
import {
  DevServerPortTakenError,
  devServerArgs,
  ephemeralPortRange,
  freePort,
  isProcessAlive,
  isTemporal,
  launcherRecordFile,
  readLauncherRecord,
  startDevServer,
  temporalBinary,
  writeLauncherRecord,
} from '../../infra/devServer';
import { isolatedHome } from '../helpers/env';

const home = isolatedHome('devserver');
const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

describe('embedded Temporal launcher', () => {
  it('starts the pinned dev server with a SQLite file, reuses it, and stops cleanly', async () => {
    const port = await freePort();
    const dbFile = path.join(home, 'temporal.db');
    const server = await startDevServer({ port, headless: true, dbFile });
    cleanups.push(() => server.stop());
    expect(server.owned).toBe(true);
    expect(await isTemporal(server.address)).toBe(true);

    const again = await startDevServer({ port, headless: true, dbFile });
    expect(again.owned).toBe(false); // a running server on the port is reused, not restarted

    await server.stop();
    expect(await isTemporal(server.address, 1000)).toBe(false);
  });

  it('refuses a port taken by something that is not Temporal, saying what to do', async () => {
    const sockets = new Set<net.Socket>();
    const squatter = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => {}); // the gRPC probe hangs up on us
      socket.end('HTTP/1.1 200 OK\r\n\r\nhello');
    });
    await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
    cleanups.push(async () => {
      for (const s of sockets) s.destroy();
      squatter.close();
    });
    const port = (squatter.address() as net.AddressInfo).port;
    await expect(startDevServer({ port, headless: true, dbFile: path.join(home, 'x.db') })).rejects.toThrow(
      `port ${port} is taken by something that is not a Temporal server`,
    );
  });

  it('says so when the port is taken between the check and the bind, and keeps test ports off the kernel range', async () => {
    const port = await freePort();
    expect(port).toBeLessThan(ephemeralPortRange()[0]); // never handed out to a connection or a bind to 0
    // A socket bound but not listening: our check connects and is refused, the server's bind then fails, as
    // when a port is taken in the gap between the two.
    const holder = spawn('python3', [
      '-c',
      `import socket,sys,time\ns=socket.socket(); s.bind(("127.0.0.1", ${port})); print("bound", flush=True); time.sleep(600)`,
    ]);
    cleanups.push(async () => void holder.kill('SIGKILL'));
    await new Promise<void>((resolve) => holder.stdout.once('data', () => resolve()));
    const launch = startDevServer({ port, headless: true, dbFile: path.join(home, 'taken.db') });
    await expect(launch).rejects.toBeInstanceOf(DevServerPortTakenError);
    await expect(launch).rejects.toThrow(`127.0.0.1:${port}: bind: address already in use`);
  });
});

/** A real `entropo server` process; `output` grows with its stderr. */
function entropoServer(port: number, env: NodeJS.ProcessEnv = {}) {
  const child = spawn(path.join(PROJECT_ROOT, 'bin', 'entropo'), ['server'], {
    env: { ...process.env, ENTROPO_HOME: home, ENTROPO_TEMPORAL_PORT: String(port), ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const state = { output: '' };
  child.stderr!.on('data', (d: Buffer) => {
    state.output += d.toString();
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await exit;
    }
  });
  return {
    child,
    state,
    exit,
    /** Resolves once its stderr matches, or rejects if it exits first. */
    async said(pattern: RegExp): Promise<string> {
      for (;;) {
        if (pattern.test(state.output)) return state.output;
        if (child.exitCode !== null || child.signalCode !== null)
          throw new Error(`entropo server exited before saying ${pattern}: ${state.output}`);
        await sleep(100);
      }
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A port with its UI port (port + 1000) free as well, as `entropo server` starts the UI. */
async function serverPort(): Promise<number> {
  for (;;) {
    const port = await freePort();
    if (port + 1000 <= 65535 && !(await portAnswers(port + 1000))) return port;
  }
}

function portAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function waitUntilGone(pid: number): Promise<void> {
  while (isProcessAlive(pid)) await sleep(100);
}

const recordOf = (port: number) =>
  readLauncherRecord(launcherRecordFile(path.join(home, 'temporal.db'), port));

describe('entropo server supervises its Temporal', () => {
  it('exits non-zero, saying so, when the server dies under it', async () => {
    const port = await serverPort();
    const server = entropoServer(port);
    await server.said(/Temporal at 127\.0\.0\.1:\d+.*\(pid \d+/);
    const record = recordOf(port)!;
    expect(record.launcherPid).toBe(server.child.pid);
    process.kill(record.serverPid, 'SIGKILL');
    expect((await server.exit).code).toBe(1);
    expect(server.state.output).toMatch(`the Temporal server (pid ${record.serverPid}) exited unexpectedly`);
  });

  it('takes its server down when it is killed (SIGKILL), so the next one starts a fresh server', async () => {
    const port = await serverPort();
    const first = entropoServer(port);
    await first.said(/Temporal at .*\(pid \d+/);
    const { serverPid } = recordOf(port)!;

    // While it runs, a second one says who supervises the server and starts nothing.
    const second = entropoServer(port);
    expect((await second.exit).code).toBe(0);
    expect(second.state.output).toContain(
      `already running (pid ${serverPid}), supervised by \`entropo server\``,
    );
    expect(second.state.output).toContain(`(pid ${first.child.pid})`);

    first.child.kill('SIGKILL');
    await first.exit;
    await waitUntilGone(serverPid); // the orphan notices its launcher is gone and exits
    expect(await isTemporal(`127.0.0.1:${port}`, 1000)).toBe(false);

    const third = entropoServer(port);
    const said = await third.said(/Temporal at .*\(pid \d+/);
    expect(said).not.toContain('already running');
    const fresh = recordOf(port)!;
    expect(fresh.launcherPid).toBe(third.child.pid);
    third.child.kill('SIGTERM');
    expect((await third.exit).code).toBe(0);
    await waitUntilGone(fresh.serverPid);
  });

  it('refuses a Temporal it did not start, and adopts an orphan of an earlier launcher', async () => {
    const port = await serverPort();
    const dbFile = path.join(home, `orphan-${port}.db`);
    // A server nobody supervises, as an older launcher killed without parent-death signalling left it.
    const orphan: ChildProcess = spawn(
      temporalBinary(),
      devServerArgs({ dbFile, port, namespace: 'default', uiPort: null }),
      { stdio: 'ignore' },
    );
    cleanups.push(async () => {
      orphan.kill('SIGKILL');
    });
    while (!(await isTemporal(`127.0.0.1:${port}`, 1000))) await sleep(200);

    const refused = entropoServer(port);
    expect((await refused.exit).code).toBe(1);
    expect(refused.state.output).toContain('was not started by entropo');

    const deadLauncher = spawn('true').pid!;
    await waitUntilGone(deadLauncher);
    writeLauncherRecord(launcherRecordFile(path.join(home, 'temporal.db'), port), {
      serverPid: orphan.pid!,
      launcherPid: deadLauncher,
      launcherCommand: 'entropo server',
      address: `127.0.0.1:${port}`,
      startedAt: new Date().toISOString(),
    });
    const adopting = entropoServer(port);
    await adopting.said(/found an orphaned server .* adopting it/);
    expect(recordOf(port)!.launcherPid).toBe(adopting.child.pid);
    adopting.child.kill('SIGTERM');
    expect((await adopting.exit).code).toBe(0);
    await new Promise((r) =>
      orphan.exitCode !== null || orphan.signalCode !== null ? r(null) : orphan.once('exit', r),
    );
    expect(orphan.signalCode ?? orphan.exitCode).not.toBeNull();
    expect(fs.existsSync(dbFile)).toBe(true);
  });
});
