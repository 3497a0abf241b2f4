import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ArtifactStore } from '../activities/artifacts';
import { type ManagedEngineServer, startEngineServer } from '../activities/engineServer';
import { entropoHome } from '../activities/paths';
import { parseTrajectoryFile, type TrajectoryRecord } from '../domain/agent/trajectory';
import {
  formatPoolProgress,
  type PoolSummary,
  parseRolloutPoolConfig,
  type RolloutPoolConfig,
  type RolloutPoolProgress,
} from '../domain/rolloutPool';
import { InvalidInputError } from '../domain/schemaErrors';
import { isHeldOutSuite } from '../domain/taskSuite';
import type { RolloutPoolResult } from '../workflows/rolloutPool';
import { readConfigDocument } from './runConfigFile';
import { resultWithProgress, startOrAttach, withSession } from './session';
import { resolveSuite } from './suites';

/** `entropo rollouts <suite> --policy <url|engine|demonstrator>` and `entropo rollouts show`. */

export interface RolloutsOptions {
  policy: string;
  model?: string;
  apiKeyEnv?: string;
  n?: number;
  concurrency?: number;
  runId?: string;
  config?: string;
  seed?: number;
  maxSteps?: number;
  temperature?: number;
  detach?: boolean;
}

export function rolloutsWorkflowId(runId: string): string {
  return `rollouts/${runId}`;
}

/**
 * The pool config from a config file and the command line. `--policy engine` is resolved by the caller (it
 * starts the engine's server); here it stands for an endpoint filled in later.
 */
export function buildRolloutsConfig(
  instances: string,
  options: RolloutsOptions,
  engine?: { baseUrl: string; model: string },
): RolloutPoolConfig {
  const document = (options.config ? readConfigDocument(options.config) : {}) as Record<string, unknown>;
  const merged: Record<string, unknown> = { ...document, instances: path.resolve(instances) };
  if (options.runId) merged.runId = options.runId;
  if (options.n !== undefined) merged.n = options.n;
  if (options.concurrency !== undefined) merged.concurrency = options.concurrency;
  if (options.seed !== undefined) merged.seed = options.seed;
  if (options.maxSteps !== undefined)
    merged.limits = { ...(document.limits as object), maxSteps: options.maxSteps };
  if (options.temperature !== undefined)
    merged.sampling = { ...(document.sampling as object), temperature: options.temperature };
  merged.policy = policyFromOption(options, engine);
  let config: RolloutPoolConfig;
  try {
    config = parseRolloutPoolConfig(merged);
  } catch (e) {
    throw new InvalidInputError('rollout config', [
      { file: options.config, field: '', message: (e as Error).message },
    ]);
  }
  if (!config.runId) {
    // Same suite and settings → same run id, so re-running the command resumes (or shows) the same run.
    const hash = createHash('sha256')
      .update(JSON.stringify({ ...config, policy: options.policy }))
      .update(fs.readFileSync(config.instances));
    const base = path.basename(path.dirname(config.instances));
    config.runId = `rollouts-${base}-${hash.digest('hex').slice(0, 10)}`;
  }
  return config;
}

function policyFromOption(options: RolloutsOptions, engine?: { baseUrl: string; model: string }): unknown {
  if (options.policy === 'demonstrator') return { kind: 'demonstrator' };
  if (options.policy === 'engine') {
    return {
      kind: 'openai',
      endpoint: {
        baseUrl: engine?.baseUrl ?? 'http://127.0.0.1:1/v1',
        model: options.model ?? engine?.model ?? 'smollm2-135m',
      },
    };
  }
  if (/^https?:\/\//.test(options.policy)) {
    return {
      kind: 'openai',
      endpoint: {
        baseUrl: options.policy,
        model: options.model ?? 'default',
        ...(options.apiKeyEnv ? { apiKeyEnv: options.apiKeyEnv } : {}),
      },
    };
  }
  throw new InvalidInputError('rollouts', [
    {
      field: 'policy',
      message: `"${options.policy}" is not a policy: give an http(s) URL of an OpenAI-compatible API, engine or demonstrator`,
    },
  ]);
}

export async function runRollouts(suiteOrFile: string, options: RolloutsOptions): Promise<number> {
  const suite = resolveSuite(suiteOrFile);
  buildRolloutsConfig(suite.instancesFile, options); // bad input is reported before anything starts
  if (options.policy === 'demonstrator' && isHeldOutSuite(suite.manifest)) {
    throw new InvalidInputError('rollouts', [
      {
        field: 'policy',
        message: `the gold-patch demonstrator reads gold patches, and suite ${suiteOrFile} is held out (a test split): use it on a training split only`,
      },
    ]);
  }
  const log = (line: string) => process.stderr.write(`${line}\n`);
  let engine: ManagedEngineServer | undefined;
  if (options.policy === 'engine') {
    log('starting the engine server (SmolLM2-135M on this machine)…');
    engine = await startEngineServer({ log });
  }
  try {
    const config = buildRolloutsConfig(suite.instancesFile, options, engine);
    const started = performance.now();
    const external = !!process.env.TEMPORAL_ADDRESS;
    return await withSession(
      { workerRoles: external ? [] : ['cpu', 'sandbox', 'llm'], log },
      async (session) => {
        const workflowId = rolloutsWorkflowId(config.runId!);
        const handle = await startOrAttach(
          session,
          { type: 'rolloutPoolWorkflow', workflowId, config, runId: config.runId!, again: 'roll out again' },
          log,
        );
        log(`run ${config.runId} · workflow ${workflowId}`);
        if (options.detach) return 0;
        const result = await resultWithProgress<RolloutPoolProgress, RolloutPoolResult>(handle, (p) =>
          formatPoolProgress(p),
        );
        printPoolSummary(result, (performance.now() - started) / 1000);
        return result.failed > 0 ? 1 : 0;
      },
    );
  } finally {
    await engine?.stop();
  }
}

function printPoolSummary(result: RolloutPoolResult, seconds: number): void {
  const out = (line: string) => process.stdout.write(`${line}\n`);
  const summary = JSON.parse(fs.readFileSync(result.summaryPath, 'utf8')) as PoolSummary;
  out(
    `${result.resolved} of ${result.rollouts} rollouts resolved their task (${result.failed} failed to run) in ${seconds.toFixed(0)} s`,
  );
  for (const t of summary.perTask) out(`  ${t.resolved}/${t.rollouts}  ${t.instanceId}`);
  out(
    `exit reasons: ${Object.entries(summary.exitReasons)
      .map(([r, n]) => `${r} ${n}`)
      .join(', ')}`,
  );
  out(`generated tokens: ${summary.generatedTokens.toLocaleString('en-US')}`);
  out(`trajectories: ${result.trajectoriesPath}`);
  out(`predictions:  ${result.predictionsPath}`);
}

/** `entropo rollouts show <run> [task] [k]`: one episode turn by turn, or the run's episodes in a list. */
export async function showRollouts(runId: string, task?: string, k?: number): Promise<number> {
  const file = path.join(entropoHome(), 'runs', runId, 'trajectories.jsonl');
  if (!fs.existsSync(file)) {
    throw new InvalidInputError('rollouts show', [
      { field: 'run', message: `no trajectories for run ${runId} (looked for ${file})` },
    ]);
  }
  const { records, problems } = parseTrajectoryFile(fs.readFileSync(file, 'utf8'), file);
  if (problems.length > 0) throw new InvalidInputError('trajectory file', problems);
  const out = (line: string) => process.stdout.write(`${line}\n`);
  const matching = records.filter((r) => task === undefined || r.taskId === task);
  if (matching.length === 0) {
    throw new InvalidInputError('rollouts show', [
      { field: 'task', message: `run ${runId} has no episode of task ${task}` },
    ]);
  }
  if (task === undefined || k === undefined) {
    for (const r of matching) {
      out(
        `${r.taskId} #${episodeIndex(r)}  ${r.exitReason.padEnd(12)} ${r.resolved ? 'resolved  ' : 'unresolved'}  ${r.steps.length} steps  ${r.rolloutId}`,
      );
    }
    return 0;
  }
  const record = matching.find((r) => r.rolloutId.endsWith(`/${k}`));
  if (!record)
    throw new InvalidInputError('rollouts show', [
      { field: 'k', message: `task ${task} has no episode ${k}` },
    ]);
  await printEpisode(record, out);
  return 0;
}

/** k, the last part of the episode's workflow id (`…/rollout/<task>/<k>`). */
function episodeIndex(record: TrajectoryRecord): string {
  return record.rolloutId.slice(record.rolloutId.lastIndexOf('/') + 1);
}

async function printEpisode(record: TrajectoryRecord, out: (line: string) => void): Promise<void> {
  const store = new ArtifactStore();
  const text = (id: string) => store.getText(id).catch(() => `(artifact ${id} is not in this store)`);
  out(`# ${record.taskId} · ${record.rolloutId} · policy ${record.policy.model} · seed ${record.seed}`);
  out(
    `exit: ${record.exitReason}${record.exitDetail ? ` (${record.exitDetail})` : ''} · resolved: ${record.resolved}`,
  );
  for (const step of record.steps) {
    out(
      `\n## step ${step.index} · ${step.tokensIn} tokens in, ${step.tokensOut} out · model ${step.llmMs} ms, tool ${step.toolMs} ms`,
    );
    if (step.thought) out(`thought: ${step.thought}`);
    out(
      step.call
        ? `call: ${step.call.name} ${JSON.stringify(step.call.parameters)}`
        : `no call (${step.error})`,
    );
    if (step.observationId) out(`observation:\n${await text(step.observationId)}`);
  }
  out(`\n## patch\n${record.patch || '(none)'}`);
}
