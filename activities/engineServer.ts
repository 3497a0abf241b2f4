import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { entropoHome, PROJECT_ROOT, venvBin } from './paths';

/**
 * The engine's OpenAI-compatible server as a managed process: started with a config, ready once it prints
 * its `listening` event (the model is loaded by then), stopped with SIGTERM (SIGKILL after a grace period).
 * It is the default policy (`--policy engine`) on machines without a GPU server of their own.
 */

export interface EngineServerOptions {
  /** The engine's serve config (engine/README.md); `port` defaults to 0 (any free port). */
  config?: Record<string, unknown>;
  /** Where its config and log go. */
  dir?: string;
  log?: (line: string) => void;
}

export interface ManagedEngineServer {
  /** Base URL of the OpenAI-compatible API, ending in `/v1`. */
  baseUrl: string;
  /** The name the base model is served under. */
  model: string;
  pid: number;
  stop(): Promise<void>;
}

export class EngineServerStartError extends Error {
  override name = 'EngineServerStartError';
}

const STOP_GRACE_MS = 15_000;

export async function startEngineServer(options: EngineServerOptions = {}): Promise<ManagedEngineServer> {
  const dir = options.dir ?? path.join(entropoHome(), 'engine-server');
  fs.mkdirSync(dir, { recursive: true });
  const configPath = path.join(dir, `serve-${process.pid}-${Date.now()}.json`);
  fs.writeFileSync(configPath, JSON.stringify({ port: 0, ...options.config }, null, 1));
  const logPath = path.join(dir, 'server.log');
  const logFile = fs.openSync(logPath, 'a');
  const child = spawn(
    path.join(venvBin(), 'python'),
    ['-m', 'entropo_engine', 'serve', '--config', configPath],
    {
      cwd: path.join(PROJECT_ROOT, 'engine'),
      env: { ...process.env, ENTROPO_HOME: entropoHome(), PYTHONUNBUFFERED: '1' },
      stdio: ['ignore', 'pipe', logFile],
    },
  );
  fs.closeSync(logFile);
  const listening = await waitForListening(child, logPath);
  options.log?.(`engine server ${listening.model} at ${listening.url} (pid ${child.pid}, log ${logPath})`);
  return {
    baseUrl: listening.url,
    model: listening.model,
    pid: child.pid!,
    stop: () => stopChild(child),
  };
}

/** Resolves with the server's `listening` event; rejects with the log's tail if it exits first. */
function waitForListening(child: ChildProcess, logPath: string): Promise<{ url: string; model: string }> {
  return new Promise((resolve, reject) => {
    let pending = '';
    const onData = (chunk: string) => {
      pending += chunk;
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        let event: { event?: string; url?: string; model?: string };
        try {
          event = JSON.parse(line) as typeof event;
        } catch {
          continue;
        }
        if (event.event === 'listening' && event.url) {
          child.stdout!.off('data', onData);
          child.stdout!.resume(); // later events are not read; keep the pipe from filling up
          resolve({ url: event.url, model: event.model ?? '' });
        }
      }
    };
    child.stdout!.setEncoding('utf8').on('data', onData);
    child.once('error', (e) =>
      reject(new EngineServerStartError(`the engine server did not start: ${e.message}`)),
    );
    child.once('exit', (code, signal) => {
      const tail = fs.existsSync(logPath)
        ? fs.readFileSync(logPath, 'utf8').trim().split('\n').slice(-8).join('\n')
        : '';
      reject(
        new EngineServerStartError(
          `the engine server exited (${signal ?? `code ${code}`}) before it was ready:\n${tail}`,
        ),
      );
    });
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
  await exited;
  clearTimeout(timer);
}
