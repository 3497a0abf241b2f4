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
import { entropoHome, PROJECT_ROOT, venvBin } from './paths';

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

/**
 * Runs one engine job as a child process: heartbeats with its latest progress line, kills it when the
 * activity is cancelled, and turns its exit code into success, a non-retryable failure (bad input,
 * NaN) or a retryable one (anything else; the retry resumes from the newest checkpoint).
 */
export async function runEngineJob(
  request: EngineJobRequest,
  /** Added to the job's environment by the worker, e.g. CUDA_VISIBLE_DEVICES of the device it runs on. */
  options: { env?: Record<string, string> } = {},
): Promise<EngineJobResult> {
  const context = Context.current();
  const jobDir = engineJobDir(request.jobId);
  fs.mkdirSync(jobDir, { recursive: true });
  const configPath = path.join(jobDir, 'config.json');
  fs.writeFileSync(configPath, JSON.stringify(withJobPaths(request, jobDir), null, 1));

  const child = spawn(
    path.join(venvBin(), 'python'),
    ['-m', 'entropo_engine', request.command, '--config', configPath],
    {
      cwd: path.join(PROJECT_ROOT, 'engine'),
      env: { ...process.env, ...options.env, ENTROPO_HOME: entropoHome(), PYTHONUNBUFFERED: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let last: EngineEvent | undefined;
  let events = 0;
  let stderr = '';
  let pending = '';
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
    const outcome = engineOutcome(exitCode);
    if (outcome === 'done') return { jobDir, events, last };
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
