import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { CPU_DEVICE, deviceEnv } from '../domain/gpuDevices';
import { parentDeathWrapper } from './parentDeath';
import { entropoHome, PROJECT_ROOT, venvBin } from './paths';

/**
 * Model servers held by a gpu worker process for the stages that sample from a model: our engine's
 * OpenAI-compatible server, any command that serves one (vLLM, SGLang), or an external server we only
 * check. A caller names each with a `key` of its choosing (e.g. run id + stage) and gets the same server
 * back while it lives, so a retried or resumed stage does not start a second one. Managed processes die
 * with the worker (the kernel signals them when it exits, even by SIGKILL) and are stopped on shutdown.
 */

export type ModelServerSpec =
  /** Our engine's `serve` (engine/README.md); `model` is the engine model, served under that name unless `config.served_model_name` says otherwise. */
  | { kind: 'engine'; model: string; config?: Record<string, unknown>; startupTimeoutSec?: number }
  /**
   * A server command, e.g. `['vllm', 'serve', MODEL, '--port', '8100', '--enable-lora']` (vLLM also needs
   * VLLM_ALLOW_RUNTIME_LORA_UPDATING=True in the worker's environment to load adapters at run time).
   * Healthy once GET <baseUrl without /v1><healthPath> answers 2xx.
   */
  | {
      kind: 'command';
      command: string[];
      baseUrl: string;
      model: string;
      healthPath?: string;
      startupTimeoutSec?: number;
    }
  /** A server someone else runs: nothing is started, its health is checked the same way. */
  | { kind: 'external'; baseUrl: string; model: string; healthPath?: string; startupTimeoutSec?: number };

export interface AdapterRef {
  name: string;
  /** A peft adapter directory on the worker's machine; a relative path is taken from the worker's cwd. */
  path: string;
}

export interface EnsureServerRequest {
  key: string;
  spec: ModelServerSpec;
  adapters?: AdapterRef[];
}

export interface ServerHandle {
  key: string;
  /** OpenAI-compatible base URL, ending in `/v1`. */
  baseUrl: string;
  /** The base model's name in requests; an adapter is requested by its name. */
  model: string;
  /** Adapters loaded, by name. */
  adapters: string[];
  /** The managed process; null for an external server. */
  pid: number | null;
}

/** One accelerator of a gpu worker and the task queue that reaches it (`gpuDeviceQueue`); `claimGpuDevice` returns one. */
export interface GpuDevice {
  queue: string;
  device: string;
  host: string;
}

export interface LoadAdapterRequest extends AdapterRef {
  key: string;
}

/** Failure types (ApplicationFailure.type) the serving activities throw. */
export const MODEL_SERVER_FAILURES = {
  /** Not healthy within its startup timeout (non-retryable; the process is killed). */
  unhealthy: 'ModelServerUnhealthy',
  /** Exited before it was healthy (retryable, e.g. memory still held by a job that just ended). */
  exited: 'ModelServerExited',
  /** Bad spec, a command that cannot be run, or an engine config the engine refused (non-retryable). */
  invalid: 'ModelServerInvalidSpec',
  /** No server under that key on this worker (non-retryable: it restarted; ensure the server again). */
  notFound: 'ModelServerNotFound',
  /** The server refused an adapter (non-retryable on 4xx, retryable otherwise). */
  adapter: 'ModelServerAdapterFailed',
} as const;

const DEFAULT_STARTUP_TIMEOUT_SEC = 600;
const POLL_MS = 1000;
const HTTP_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 15_000;
const LOG_TAIL_LINES = 20;
const LOG_TAIL_CHARS = 3000;
/** Exit codes meaning "will not work on a retry": the engine's invalid config, and exec failures (setpriv, sh). */
const NON_RETRYABLE_EXITS = new Set([2, 126, 127]);

interface ServerEntry {
  key: string;
  spec: ModelServerSpec;
  specId: string;
  device: string;
  baseUrl: string | undefined;
  model: string;
  child: ChildProcess | null;
  spawnError?: Error;
  logPath: string | undefined;
  /** Adapters loaded, name → absolute path. */
  adapters: Map<string, string>;
}

export interface ModelServersOptions {
  log?: (line: string) => void;
}

/** The model servers of one worker process, by key. */
export class ModelServers {
  private readonly entries = new Map<string, ServerEntry>();
  /** Calls for one key run one after another, so two attempts never start two servers. */
  private readonly queues = new Map<string, Promise<unknown>>();
  private readonly log: (line: string) => void;

  constructor(options: ModelServersOptions = {}) {
    this.log = options.log ?? (() => {});
  }

  /** Servers alive on `device` (started by this worker), for placing work on the least busy device. */
  liveCount(device: string): number {
    let n = 0;
    for (const entry of this.entries.values())
      if (entry.device === device && entry.child && isAlive(entry)) n++;
    return n;
  }

  /**
   * The server for `request.key`, healthy, with `request.adapters` loaded. The same key with the same spec
   * and a live process is the same server; a changed spec or a dead process is (re)started. Heartbeats
   * while it waits when run as an activity.
   */
  ensure(request: EnsureServerRequest, device: string = CPU_DEVICE): Promise<ServerHandle> {
    return this.serialized(request.key, async () => {
      checkRequest(request);
      const specId = stableJson(request.spec);
      let entry = this.entries.get(request.key);
      if (entry && (entry.specId !== specId || entry.device !== device || (entry.child && !isAlive(entry)))) {
        this.log(
          `model server ${request.key}: ${entry.specId !== specId ? 'spec changed' : 'process gone'}; restarting`,
        );
        await this.stopEntry(entry);
        entry = undefined;
      }
      if (entry?.child && entry.baseUrl && !(await isHealthy(healthUrl(entry)))) {
        // A server that was healthy and no longer answers, though Node has not seen it exit yet (its exit
        // event comes later on a busy machine): start it again rather than wait on a dead process.
        this.log(`model server ${request.key}: not answering; restarting`);
        await this.stopEntry(entry);
        entry = undefined;
      }
      if (!entry) {
        entry = this.launch(request.key, request.spec, specId, device);
        this.entries.set(request.key, entry);
      }
      await this.waitUntilHealthy(entry);
      for (const adapter of request.adapters ?? []) await this.loadInto(entry, adapter);
      return handleOf(entry);
    });
  }

  /** Loads an adapter into the server under `key`; a no-op when it is loaded from the same path. */
  loadAdapter(request: LoadAdapterRequest): Promise<void> {
    return this.serialized(request.key, async () => {
      const entry = this.entries.get(request.key);
      if (!entry) {
        throw ApplicationFailure.create({
          nonRetryable: true,
          type: MODEL_SERVER_FAILURES.notFound,
          message: `no model server "${request.key}" on this worker (it was stopped, or the worker restarted); call ensureModelServer again`,
        });
      }
      await this.loadInto(entry, request);
    });
  }

  /** Stops the server under `key` (an external one is only forgotten); nothing to do if there is none. */
  stop(key: string): Promise<void> {
    return this.serialized(key, async () => {
      const entry = this.entries.get(key);
      if (entry) await this.stopEntry(entry);
    });
  }

  /** Stops every server: on worker shutdown. */
  async stopAll(): Promise<void> {
    await Promise.all([...this.entries.values()].map((entry) => this.stopEntry(entry)));
  }

  private serialized<T>(key: string, work: () => Promise<T>): Promise<T> {
    const previous = this.queues.get(key) ?? Promise.resolve();
    const next = previous.catch(() => {}).then(work);
    const settled = next.catch(() => {});
    this.queues.set(key, settled);
    void settled.then(() => {
      if (this.queues.get(key) === settled) this.queues.delete(key);
    });
    return next;
  }

  private launch(key: string, spec: ModelServerSpec, specId: string, device: string): ServerEntry {
    const entry: ServerEntry = {
      key,
      spec,
      specId,
      device,
      baseUrl: spec.kind === 'engine' ? undefined : trimSlash(spec.baseUrl),
      model: spec.model,
      child: null,
      logPath: undefined,
      adapters: new Map(),
    };
    if (spec.kind === 'external') return entry;

    const dir = path.join(entropoHome(), 'model-servers', dirName(key));
    fs.mkdirSync(dir, { recursive: true });
    entry.logPath = path.join(dir, 'server.log');
    let argv: string[];
    let cwd = process.cwd();
    let env: NodeJS.ProcessEnv = { ...process.env, ...deviceEnv(device) };
    if (spec.kind === 'engine') {
      const configPath = path.join(dir, 'serve.json');
      const config = { port: 0, served_model_name: spec.model, ...spec.config, model: spec.model };
      fs.writeFileSync(configPath, JSON.stringify(config, null, 1));
      argv = [path.join(venvBin(), 'python'), '-m', 'entropo_engine', 'serve', '--config', configPath];
      cwd = path.join(PROJECT_ROOT, 'engine');
      env = { ...env, ENTROPO_HOME: entropoHome(), PYTHONUNBUFFERED: '1' };
    } else {
      argv = spec.command;
    }
    // A fresh log per start: the engine's `listening` line is read from it, and its tail explains a failure.
    const logFile = fs.openSync(entry.logPath, 'w');
    const [program, ...args] = [...parentDeathWrapper(), ...argv];
    // Its own process group, so stopping it also stops the processes it started (vLLM's engine cores).
    const child = spawn(program!, args, { cwd, env, detached: true, stdio: ['ignore', logFile, logFile] });
    fs.closeSync(logFile);
    child.once('error', (e) => {
      entry.spawnError = e;
    });
    entry.child = child;
    this.log(
      `model server ${key}: started ${describeCommand(entry)} on device ${device} (pid ${child.pid}, log ${entry.logPath})`,
    );
    return entry;
  }

  private async waitUntilHealthy(entry: ServerEntry): Promise<void> {
    const context = activityContext();
    const timeoutSec = entry.spec.startupTimeoutSec ?? DEFAULT_STARTUP_TIMEOUT_SEC;
    const started = Date.now();
    for (;;) {
      if (context?.cancellationSignal.aborted) {
        await this.stopEntry(entry);
        throw context.cancellationSignal.reason;
      }
      const exited = exitFailure(entry);
      if (exited) {
        await this.stopEntry(entry);
        throw exited;
      }
      if (entry.spec.kind === 'engine' && !entry.baseUrl) readListening(entry);
      if (entry.baseUrl && (await isHealthy(healthUrl(entry)))) return;
      const waitedSec = Math.round((Date.now() - started) / 1000);
      context?.heartbeat({ key: entry.key, waitingForHealthSec: waitedSec });
      if (waitedSec >= timeoutSec) {
        const pid = entry.child?.pid ?? null;
        await this.stopEntry(entry);
        throw ApplicationFailure.create({
          nonRetryable: true,
          type: MODEL_SERVER_FAILURES.unhealthy,
          message:
            `model server "${entry.key}" (${describeCommand(entry)}) was not healthy within ${timeoutSec}s ` +
            `(health: ${entry.baseUrl ? healthUrl(entry) : 'its `listening` line'})${logTail(entry)}`,
          details: [{ key: entry.key, pid, logPath: entry.logPath ?? null }],
        });
      }
      await sleep(POLL_MS, context?.cancellationSignal);
    }
  }

  private async loadInto(entry: ServerEntry, adapter: AdapterRef): Promise<void> {
    const loraPath = path.resolve(adapter.path);
    const base = entry.baseUrl!;
    // The server's own list is the truth (an external server, or one that outlived an earlier worker);
    // `root` is the path an adapter was loaded from, in vLLM and in our engine.
    const served = await listModels(base);
    let current: string | undefined;
    if (!served) current = entry.adapters.get(adapter.name);
    else if (served.has(adapter.name))
      current = served.get(adapter.name) ?? entry.adapters.get(adapter.name) ?? '(unknown path)';
    if (current === loraPath) {
      entry.adapters.set(adapter.name, loraPath);
      return;
    }
    if (current !== undefined) {
      // Same name, another path (e.g. a newer checkpoint): replace it.
      await post(entry, base, 'unload_lora_adapter', { lora_name: adapter.name }, [404]);
      entry.adapters.delete(adapter.name);
    }
    await post(entry, base, 'load_lora_adapter', { lora_name: adapter.name, lora_path: loraPath });
    entry.adapters.set(adapter.name, loraPath);
    this.log(`model server ${entry.key}: loaded adapter ${adapter.name} from ${loraPath}`);
  }

  private async stopEntry(entry: ServerEntry): Promise<void> {
    if (this.entries.get(entry.key) === entry) this.entries.delete(entry.key);
    const child = entry.child;
    if (!child || !isAlive(entry)) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    signalGroup(child, 'SIGTERM');
    const timer = setTimeout(() => signalGroup(child, 'SIGKILL'), STOP_GRACE_MS);
    await exited;
    clearTimeout(timer);
    // Whatever it started and left behind in its group goes too.
    signalGroup(child, 'SIGKILL');
    this.log(`model server ${entry.key}: stopped (pid ${child.pid})`);
  }
}

/** The serving activities of one device queue of a gpu worker. */
export function createModelServerActivities(servers: ModelServers, device: string = CPU_DEVICE) {
  return {
    ensureModelServer: (request: EnsureServerRequest): Promise<ServerHandle> =>
      servers.ensure(request, device),
    loadAdapter: (request: LoadAdapterRequest): Promise<void> => servers.loadAdapter(request),
    stopModelServer: (request: { key: string }): Promise<void> => servers.stop(request.key),
  };
}

export type ModelServerActivities = ReturnType<typeof createModelServerActivities>;

function checkRequest(request: EnsureServerRequest): void {
  const problems: string[] = [];
  const spec = request.spec as Partial<Record<string, unknown>> | undefined;
  if (!request.key) problems.push('key is empty');
  if (!spec || !['engine', 'command', 'external'].includes(spec.kind as string))
    problems.push(`spec.kind must be engine, command or external (got ${JSON.stringify(spec?.kind)})`);
  else {
    if (typeof spec.model !== 'string' || !spec.model) problems.push('spec.model is empty');
    if (spec.kind === 'command' && (!Array.isArray(spec.command) || spec.command.length === 0))
      problems.push('spec.command must be a non-empty list of arguments');
    if (spec.kind !== 'engine' && !/^https?:\/\/[^/]+/.test(String(spec.baseUrl)))
      problems.push(`spec.baseUrl must be an http(s) URL (got ${JSON.stringify(spec.baseUrl)})`);
  }
  for (const [i, adapter] of (request.adapters ?? []).entries())
    if (!adapter.name || !adapter.path) problems.push(`adapters[${i}] needs a name and a path`);
  if (problems.length > 0) {
    throw ApplicationFailure.create({
      nonRetryable: true,
      type: MODEL_SERVER_FAILURES.invalid,
      message: `model server "${request.key}": ${problems.join('; ')}`,
    });
  }
}

function handleOf(entry: ServerEntry): ServerHandle {
  return {
    key: entry.key,
    baseUrl: entry.baseUrl!,
    model: entry.model,
    adapters: [...entry.adapters.keys()],
    pid: entry.child?.pid ?? null,
  };
}

function isAlive(entry: ServerEntry): boolean {
  const child = entry.child;
  return !!child && child.exitCode === null && child.signalCode === null && !entry.spawnError;
}

/** The failure for a managed process that is gone before it was healthy, or undefined while it runs. */
function exitFailure(entry: ServerEntry): ApplicationFailure | undefined {
  const child = entry.child;
  if (!child) return undefined;
  if (entry.spawnError) {
    return ApplicationFailure.create({
      nonRetryable: true,
      type: MODEL_SERVER_FAILURES.invalid,
      message: `model server "${entry.key}": cannot run ${describeCommand(entry)}: ${entry.spawnError.message}`,
    });
  }
  if (child.exitCode === null && child.signalCode === null) return undefined;
  const how = child.signalCode ? `signal ${child.signalCode}` : `exit code ${child.exitCode}`;
  return ApplicationFailure.create({
    nonRetryable: child.exitCode !== null && NON_RETRYABLE_EXITS.has(child.exitCode),
    type:
      child.exitCode !== null && NON_RETRYABLE_EXITS.has(child.exitCode)
        ? MODEL_SERVER_FAILURES.invalid
        : MODEL_SERVER_FAILURES.exited,
    message: `model server "${entry.key}" (${describeCommand(entry)}) exited (${how}) before it was healthy${logTail(entry)}`,
  });
}

/** Our engine prints `{"event": "listening", "url", "model"}` once its model is loaded and the port is bound. */
function readListening(entry: ServerEntry): void {
  let text: string;
  try {
    text = fs.readFileSync(entry.logPath!, 'utf8');
  } catch {
    return;
  }
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const event = JSON.parse(line) as { event?: string; url?: string; model?: string };
      if (event.event === 'listening' && event.url) {
        entry.baseUrl = trimSlash(event.url);
        if (event.model) entry.model = event.model;
        return;
      }
    } catch {
      // a log line that only looks like JSON
    }
  }
}

function healthUrl(entry: ServerEntry): string {
  const spec = entry.spec;
  const healthPath = spec.kind === 'engine' ? '/health' : (spec.healthPath ?? '/health');
  return `${entry.baseUrl!.replace(/\/v1$/, '')}${healthPath.startsWith('/') ? '' : '/'}${healthPath}`;
}

async function isHealthy(url: string): Promise<boolean> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
    await response.arrayBuffer();
    return response.ok;
  } catch {
    return false;
  }
}

/** The server's models: id → the path it was loaded from (`root`), or undefined if it cannot tell. */
async function listModels(baseUrl: string): Promise<Map<string, string | undefined> | undefined> {
  try {
    const response = await fetch(`${baseUrl}/models`, { signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
    if (!response.ok) return undefined;
    const body = (await response.json()) as { data?: { id?: string; root?: string }[] };
    if (!Array.isArray(body.data)) return undefined;
    return new Map(body.data.filter((m) => typeof m.id === 'string').map((m) => [m.id!, m.root]));
  } catch {
    return undefined;
  }
}

async function post(
  entry: ServerEntry,
  baseUrl: string,
  route: string,
  body: Record<string, string>,
  acceptedStatuses: number[] = [],
): Promise<void> {
  let response: Response;
  try {
    response = await fetch(`${baseUrl}/${route}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(HTTP_TIMEOUT_MS * 10),
    });
  } catch (e) {
    throw ApplicationFailure.retryable(
      `model server "${entry.key}": POST ${route} ${JSON.stringify(body)} failed: ${(e as Error).message}`,
      MODEL_SERVER_FAILURES.adapter,
    );
  }
  const text = await response.text();
  if (response.ok || acceptedStatuses.includes(response.status)) return;
  throw ApplicationFailure.create({
    nonRetryable: response.status >= 400 && response.status < 500,
    type: MODEL_SERVER_FAILURES.adapter,
    message: `model server "${entry.key}": POST ${route} ${JSON.stringify(body)} answered ${response.status}: ${text.slice(0, 1000)}`,
  });
}

function describeCommand(entry: ServerEntry): string {
  const spec = entry.spec;
  if (spec.kind === 'engine') return `entropo_engine serve, model ${spec.model}`;
  if (spec.kind === 'command') return spec.command.join(' ');
  return `external server ${spec.baseUrl}`;
}

function logTail(entry: ServerEntry): string {
  if (!entry.logPath) return '';
  let text = '';
  try {
    text = fs.readFileSync(entry.logPath, 'utf8');
  } catch {
    return '';
  }
  const tail = text.trimEnd().split('\n').slice(-LOG_TAIL_LINES).join('\n').slice(-LOG_TAIL_CHARS);
  return tail ? `; its log ${entry.logPath} ends:\n${tail}` : `; its log ${entry.logPath} is empty`;
}

function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    process.kill(-child.pid!, signal);
  } catch {
    // the group is gone already
  }
}

function activityContext(): Context | undefined {
  try {
    return Context.current();
  } catch {
    return undefined; // called outside an activity: nothing to heartbeat to
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done);
  });
}

function trimSlash(url: string): string {
  return url.replace(/\/+$/, '');
}

/** A directory name for a key: readable, and distinct for keys that differ only in odd characters. */
function dirName(key: string): string {
  const hash = createHash('sha256').update(key).digest('hex').slice(0, 8);
  return `${key.replace(/[^\w.-]+/g, '_').slice(0, 80)}-${hash}`;
}

/** JSON with sorted keys: the same spec gives the same text whatever order its fields came in. */
function stableJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(
          Object.entries(v as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b)),
        )
      : v,
  );
}
