import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import {
  describeProgress,
  type EngineCommand,
  type EngineEvent,
  engineOutcome,
  parseEngineLine,
} from '../domain/engineProtocol';
import { ArtifactStore } from './artifacts';
import { putDirectory, restoreDirectory } from './directorySnapshots';
import { parentDeathWrapper } from './parentDeath';
import { entropoHome, PROJECT_ROOT, venvBin } from './paths';
import { recorded } from './recordedWork';

export interface EngineJobRequest {
  command: EngineCommand;
  /** The engine config (engine/README.md); validated by the engine, which names any bad field. */
  config: Record<string, unknown>;
  /** Stable across retries, so a retried `train` finds its checkpoints and resumes. */
  jobId: string;
}

export interface EngineJobResult {
  jobDir: string;
  events: number;
  last: EngineEvent | undefined;
  /** A training job's adapter in the artifact store (a directory manifest): it outlives the worker's disk. */
  adapterId?: string;
  /** Where a training job wrote its adapter on the worker's disk (`trainingOutputs`). */
  adapterDir?: string;
}

/** The newest checkpoint of a training job kept in the artifact store, under `checkpointRecordKey`. */
interface StoredCheckpoint {
  step: number;
  manifestId: string;
}

const STDERR_TAIL = 4000;

export function engineJobDir(jobId: string): string {
  if (!/^[\w.-]+$/.test(jobId))
    throw new Error(`engine job id ${JSON.stringify(jobId)} must be [A-Za-z0-9_.-]`);
  return path.join(entropoHome(), 'engine-jobs', jobId);
}

/**
 * A config that names no output gets one in the job's directory (`out/` for training, `scores.jsonl` for
 * scoring), so a workflow can describe a job without knowing the worker's disk.
 */
function withJobPaths(request: EngineJobRequest, jobDir: string): Record<string, unknown> {
  const config = { ...request.config };
  if (request.command === 'train' && config.output_dir === undefined)
    config.output_dir = path.join(jobDir, 'out');
  if (request.command === 'score' && config.output === undefined)
    config.output = path.join(jobDir, 'scores.jsonl');
  return config;
}

/** Where a training job (its config after `withJobPaths`) writes its checkpoints and its adapter. */
function trainingOutputs(config: Record<string, unknown>): { checkpoints: string; adapter: string } {
  const out = String(config.output_dir);
  return { checkpoints: path.join(out, 'checkpoints'), adapter: path.join(out, 'adapter') };
}

/**
 * Runs one engine job as a child process: heartbeats with its latest progress line, kills it when the
 * activity is cancelled (and the kernel kills it when the worker dies), and turns its exit code into
 * success, a non-retryable failure (bad input, NaN) or a retryable one (anything else).
 *
 * A training job's checkpoints go to the artifact store as the engine writes them, and its adapter when it
 * is done, so a retry on another device or machine resumes from the newest checkpoint however the worker
 * died. A finished job is recorded under its id and config: a later attempt (its completion was lost to a
 * server outage) returns the result, restoring the adapter if this worker's disk lacks it.
 */
export async function runEngineJob(
  request: EngineJobRequest,
  /** Added to the job's environment by the worker, e.g. CUDA_VISIBLE_DEVICES of the device it runs on. */
  options: { env?: Record<string, string> } = {},
): Promise<EngineJobResult> {
  const context = Context.current();
  const store = new ArtifactStore();
  const namespace = context.info.namespace;
  const config = withJobPaths(request, engineJobDir(request.jobId));
  const key = {
    work: 'engine-job',
    version: 1,
    namespace,
    jobId: request.jobId,
    command: request.command,
    config: request.config,
  };
  const result = await recorded(
    store,
    key,
    () => runEngineProcess(request, config, options, store, namespace),
    { signal: context.cancellationSignal },
  );
  if (result.adapterId) {
    const { adapter } = trainingOutputs(config);
    if (!fs.existsSync(adapter)) await restoreDirectory(store, result.adapterId, adapter);
  }
  return result;
}

function checkpointRecordKey(namespace: string, jobId: string): string {
  return `engine-checkpoint/${namespace}/${jobId}`;
}

/** The newest complete checkpoint on this disk (the engine names them `step-0000012`, complete once `state.json` exists). */
function newestLocalCheckpoint(checkpointsDir: string): number {
  if (!fs.existsSync(checkpointsDir)) return 0;
  let newest = 0;
  for (const name of fs.readdirSync(checkpointsDir)) {
    const match = /^step-(\d+)$/.exec(name);
    if (match && fs.existsSync(path.join(checkpointsDir, name, 'state.json')))
      newest = Math.max(newest, Number(match[1]));
  }
  return newest;
}

async function runEngineProcess(
  request: EngineJobRequest,
  /** The request's config with its output paths filled in (`withJobPaths`). */
  config: Record<string, unknown>,
  options: { env?: Record<string, string> },
  store: ArtifactStore,
  namespace: string,
): Promise<EngineJobResult> {
  const context = Context.current();
  const jobDir = engineJobDir(request.jobId);
  fs.mkdirSync(jobDir, { recursive: true });
  const configPath = path.join(jobDir, 'config.json');
  fs.writeFileSync(configPath, JSON.stringify(config, null, 1));

  // A checkpoint stored by an attempt elsewhere that this disk lacks: put it where the engine resumes from.
  const checkpointKey = checkpointRecordKey(namespace, request.jobId);
  if (request.command === 'train') {
    const { checkpoints } = trainingOutputs(config);
    const stored = (await store.getRecord<StoredCheckpoint>(checkpointKey))?.value;
    if (stored && stored.step > newestLocalCheckpoint(checkpoints))
      await restoreDirectory(
        store,
        stored.manifestId,
        path.join(checkpoints, `step-${String(stored.step).padStart(7, '0')}`),
      );
  }

  const [command, ...wrapperArgs] = [...parentDeathWrapper('KILL'), path.join(venvBin(), 'python')];
  const child = spawn(
    command!,
    [...wrapperArgs, '-m', 'entropo_engine', request.command, '--config', configPath],
    {
      cwd: path.join(PROJECT_ROOT, 'engine'),
      // A fixed hash seed: peft writes `target_modules` (a set) in hash order, and a resumed job must write
      // the same adapter_config.json as an uninterrupted one.
      env: {
        ...process.env,
        ...options.env,
        ENTROPO_HOME: entropoHome(),
        PYTHONUNBUFFERED: '1',
        PYTHONHASHSEED: '0',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let last: EngineEvent | undefined;
  let events = 0;
  let stderr = '';
  let pending = '';
  // Checkpoints are stored one after another, in the order the engine wrote them.
  let storing: Promise<void> = Promise.resolve();
  const storeCheckpoint = (event: EngineEvent) => {
    const dir = String(event.path);
    const step = Number(event.step);
    storing = storing.then(async () => {
      try {
        const manifest = await putDirectory(store, dir);
        await store.putRecord(checkpointKey, { step, manifestId: manifest.id } satisfies StoredCheckpoint);
      } catch (e) {
        // The engine already replaced it with a newer one (keep_checkpoints), which is stored next.
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
    });
  };
  const log = fs.createWriteStream(path.join(jobDir, 'events.jsonl'), { flags: 'a' });
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    pending += chunk;
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) {
      const event = parseEngineLine(line);
      if (!event) continue;
      events++;
      last = event;
      log.write(`${line.trim()}\n`);
      if (event.event === 'checkpoint' && typeof event.path === 'string') storeCheckpoint(event);
    }
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-STDERR_TAIL);
  });
  const heartbeat = setInterval(() => context.heartbeat({ progress: describeProgress(last), last }), 2000);
  const onCancel = () => child.kill('SIGTERM');
  context.cancellationSignal.addEventListener('abort', onCancel);
  try {
    const exitCode = await new Promise<number | null>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (code) => resolve(code));
    });
    await storing;
    const outcome = engineOutcome(exitCode);
    if (outcome === 'done') {
      const adapterDir = request.command === 'train' ? trainingOutputs(config).adapter : null;
      if (adapterDir && fs.existsSync(adapterDir)) {
        return { jobDir, events, last, adapterId: (await putDirectory(store, adapterDir)).id, adapterDir };
      }
      return { jobDir, events, last };
    }
    const message = `engine ${request.command} (${request.jobId}) exited with ${exitCode}: ${stderr.trim().split('\n').slice(-6).join('\n')}`;
    if (outcome === 'retryable') throw ApplicationFailure.retryable(message, 'EngineJobFailed');
    throw ApplicationFailure.nonRetryable(
      message,
      outcome === 'invalid-input' ? 'EngineInvalidInput' : 'EngineNumericalFailure',
    );
  } finally {
    clearInterval(heartbeat);
    context.cancellationSignal.removeEventListener('abort', onCancel);
    log.end();
  }
}
