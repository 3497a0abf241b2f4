import {
  ApplicationFailure,
  CancellationScope,
  executeChild,
  proxyActivities,
  workflowInfo,
} from '@temporalio/workflow';
import type { EngineJobResult } from '../activities/engine';
import type { EvaluationActivities, PolicyEvaluationRef } from '../activities/evaluation';
import type { PairingData, PipelineActivities, SftData } from '../activities/pipeline';
import { entropoJob, scoreJob, sftJob, verifierJob } from '../domain/engineJobs';
import type { PipelineConfig } from '../domain/pipelineConfig';
import type { RolloutPoolConfigInput } from '../domain/rolloutPool';
import { queuePrefixOf } from '../domain/taskQueues';
import { mapWithConcurrency } from './concurrency';
import { claimDevice, runOnGpu, serverActivities } from './gpu';
import { regressionCheckWorkflow } from './regressionCheck';
import { type RolloutPoolResult, rolloutPoolWorkflow } from './rolloutPool';

/**
 * The pipeline's stages, each a child workflow with a plan of its own (DESIGN.md §1). They take the run
 * config and the artifacts of earlier stages (paths and ids) and return theirs; `pipelineWorkflow` records
 * what they return so a resumed run does not run them again.
 */

export interface StageInput<I = Record<string, never>> {
  runId: string;
  /**
   * Short hash of the stage's key: names its jobs and pools, so a stage run again with another config or
   * other inputs never resumes the checkpoints or overwrites the episodes of an earlier attempt.
   */
  hash: string;
  config: PipelineConfig;
  inputs: I;
}

const cpu = proxyActivities<PipelineActivities & EvaluationActivities>({
  startToCloseTimeout: '30 minutes',
  retry: { maximumAttempts: 5, nonRetryableErrorTypes: ['BadInput', 'HeldOutSuite', 'StageFailed'] },
});

function prefix(): string {
  return queuePrefixOf(workflowInfo().taskQueue);
}

/** A rollout pool of one policy as a child workflow (its episodes are children of it). */
async function rollOut(
  runId: string,
  hash: string,
  label: string,
  instances: string,
  policy: RolloutPoolConfigInput['policy'],
  budget: PipelineConfig['tts'],
  config: PipelineConfig,
  seed: number,
): Promise<RolloutPoolResult> {
  const poolRunId = `${runId}.${label}.${hash}`;
  const pool: RolloutPoolConfigInput = {
    instances,
    runId: poolRunId,
    policy,
    n: budget.n,
    concurrency: budget.concurrency,
    seed,
    sampling: budget.sampling,
    limits: budget.limits,
    sandbox: config.sandbox,
    grading: { testTimeoutSec: config.grading.testTimeoutSec },
  };
  return executeChild(rolloutPoolWorkflow, {
    workflowId: `${workflowInfo().workflowId}/${label}`,
    args: [pool],
  });
}

/**
 * Serves the base model with the given adapters on a device for the length of `work`, then stops it.
 * Rollouts start only once the server is healthy (ensureModelServer returns then).
 */
async function withModelServer<T>(
  runId: string,
  stage: string,
  config: PipelineConfig,
  adapters: { name: string; path: string }[],
  work: (endpoint: { baseUrl: string; model: string }) => Promise<T>,
): Promise<T> {
  const device = await claimDevice(prefix());
  const server = serverActivities(device.queue);
  const key = `${runId}/${stage}`;
  const served = config.model.servedName ?? config.model.base;
  const spec =
    config.serving.kind === 'engine'
      ? {
          kind: 'engine' as const,
          model: config.model.base,
          config: { served_model_name: served, runtime: config.serving.runtime },
        }
      : config.serving.kind === 'command'
        ? {
            kind: 'command' as const,
            command: config.serving.command,
            baseUrl: config.serving.baseUrl,
            model: served,
            healthPath: config.serving.healthPath,
            startupTimeoutSec: config.serving.startupTimeoutSec,
          }
        : { kind: 'external' as const, baseUrl: config.serving.baseUrl, model: served };
  const handle = await server.ensureModelServer({ key, spec, adapters });
  try {
    return await work({ baseUrl: handle.baseUrl, model: handle.model });
  } finally {
    // Also when the run is cancelled: the server must not outlive the stage.
    await CancellationScope.nonCancellable(() => server.stopModelServer({ key }));
  }
}

function openaiPolicy(endpoint: { baseUrl: string }, model: string, name: string) {
  return {
    kind: 'openai' as const,
    name,
    endpoint: { baseUrl: endpoint.baseUrl, model },
  };
}

// ---------------------------------------------------------------------------------------------------------
// 1. SFT: teacher episodes on the training split → SFT data → SFT training.

export interface SftStageOutput {
  teacher: { trajectoriesPath: string; rollouts: number; resolved: number };
  data: SftData | null;
  adapter: string;
  /** The adapter in the artifact store (null when the config named an existing adapter). */
  adapterId: string | null;
  jobDir: string | null;
}

export async function sftStageWorkflow(input: StageInput): Promise<SftStageOutput> {
  const { runId, config } = input;
  const teacherPolicy =
    config.teacher.kind === 'demonstrator'
      ? { kind: 'demonstrator' as const }
      : { kind: 'openai' as const, endpoint: config.teacher.endpoint, name: config.teacher.name };
  const teacher = await rollOut(
    runId,
    input.hash,
    'sft-teacher',
    config.suites.train,
    teacherPolicy,
    {
      ...config.pool,
      n: config.sft.teacherRollouts,
      limits: { ...config.pool.limits, maxSteps: config.sft.teacherMaxSteps },
    },
    config,
    config.seed,
  );
  const teacherRef = {
    trajectoriesPath: teacher.trajectoriesPath,
    rollouts: teacher.rollouts,
    resolved: teacher.resolved,
  };
  if (config.sft.adapter)
    return { teacher: teacherRef, data: null, adapter: config.sft.adapter, adapterId: null, jobDir: null };
  const data = await cpu.exportSftData({
    runId,
    trajectoriesPath: teacher.trajectoriesPath,
    keep: config.sft.keep,
  });
  if (data.examples === 0) {
    throw stageFailed(
      `no teacher episode is SFT data (${JSON.stringify(data.dropped)} of ${teacher.rollouts} dropped; sft.keep = ${config.sft.keep})`,
    );
  }
  const job = await runOnGpu(prefix(), {
    command: 'train',
    jobId: `${runId}-${input.hash}-sft`,
    config: sftJob(config, data.path),
  });
  return { teacher: teacherRef, data, ...trainedAdapter(job) };
}

/**
 * A finished training job's adapter: where the engine wrote it, and its copy in the artifact store. Results
 * recorded before jobs reported `adapterDir` had it at the default place, `<jobDir>/out/adapter`.
 */
function trainedAdapter(job: EngineJobResult): { adapter: string; adapterId: string | null; jobDir: string } {
  const adapter = job.adapterDir ?? `${job.jobDir}/out/adapter`;
  return { adapter, adapterId: job.adapterId ?? null, jobDir: job.jobDir };
}

// ---------------------------------------------------------------------------------------------------------
// 2. Pool: the SFT student's episodes on the training split (plus the teacher's), graded.

export interface PoolStageOutput {
  sources: { path: string; source: string }[];
  student: { rollouts: number; resolved: number; failed: number } | null;
}

export async function poolStageWorkflow(
  input: StageInput<{ sftAdapter: string; teacherTrajectories: string }>,
): Promise<PoolStageOutput> {
  const { runId, config } = input;
  if (config.pool.trajectories) {
    return { sources: config.pool.trajectories.map((path) => ({ path, source: 'given' })), student: null };
  }
  const adapterName = `${runId}-sft`;
  const student = await withModelServer(
    runId,
    'pool',
    config,
    [{ name: adapterName, path: input.inputs.sftAdapter }],
    (endpoint) =>
      rollOut(
        runId,
        input.hash,
        'pool-student',
        config.suites.train,
        openaiPolicy(endpoint, adapterName, `${config.model.base}+sft`),
        config.pool,
        config,
        config.seed + 1_000_000,
      ),
  );
  const sources = [{ path: student.trajectoriesPath, source: 'student' }];
  if (config.pool.includeTeacher) sources.push({ path: input.inputs.teacherTrajectories, source: 'teacher' });
  return {
    sources,
    student: { rollouts: student.rollouts, resolved: student.resolved, failed: student.failed },
  };
}

// ---------------------------------------------------------------------------------------------------------
// 3. Pairing: DPO pairs, KTO labels and verifier data from the pool.

export type PairingStageOutput = PairingData | { given: string };

export async function pairingStageWorkflow(
  input: StageInput<{ sources: { path: string; source: string }[] }>,
): Promise<PairingStageOutput> {
  const { runId, config } = input;
  if (config.pairing.pairs) return { given: config.pairing.pairs };
  const data = await cpu.buildPairingData({
    runId,
    sources: input.inputs.sources,
    maxPairsPerTask: config.pairing.maxPairsPerTask,
    seed: config.seed,
  });
  const examples = config.entropo.mode === 'dpo' ? data.stats.pairs : data.stats.usable;
  if (examples === 0) {
    throw stageFailed(
      `the pool gave no ${config.entropo.mode === 'dpo' ? 'pair' : 'KTO example'}: ${data.stats.tasksWithoutResolved.length} task(s) have no resolved episode, ${data.stats.tasksWithoutUnresolved.length} no unresolved one (stats: ${data.statsPath})`,
    );
  }
  return data;
}

// ---------------------------------------------------------------------------------------------------------
// 4. Training: EntroPO from the SFT model (its reference), and the verifier.

export interface TrainingStageOutput {
  /** `adapterId`: the adapter in the artifact store. */
  policy: { adapter: string; adapterId: string | null; jobDir: string; mode: string };
  verifier: { adapter: string; adapterId: string | null; jobDir: string } | null;
  /** The lambda = 0 baseline (plain DPO/KTO on the same pairs), when `baselines` asks for it. */
  lambda0?: { adapter: string; adapterId: string | null; jobDir: string };
}

export async function trainingStageWorkflow(
  input: StageInput<{ sftAdapter: string; pairing: PairingStageOutput }>,
): Promise<TrainingStageOutput> {
  const { runId, config } = input;
  const pairing = input.inputs.pairing;
  const data =
    'given' in pairing ? pairing.given : config.entropo.mode === 'dpo' ? pairing.pairsPath : pairing.ktoPath;
  const policyJob = await runOnGpu(prefix(), {
    command: 'train',
    jobId: `${runId}-${input.hash}-entropo-${config.entropo.mode}`,
    config: entropoJob(config, data, input.inputs.sftAdapter),
  });
  let lambda0: TrainingStageOutput['lambda0'];
  if (config.baselines.includes('lambda0')) {
    const job = await runOnGpu(prefix(), {
      command: 'train',
      jobId: `${runId}-${input.hash}-entropo-${config.entropo.mode}-lambda0`,
      config: entropoJob(config, data, input.inputs.sftAdapter, 0),
    });
    lambda0 = trainedAdapter(job);
  }
  let verifier: TrainingStageOutput['verifier'] = null;
  if (config.verifier.enabled && !('given' in pairing) && pairing.verifierExamples > 0) {
    const job = await runOnGpu(prefix(), {
      command: 'train',
      jobId: `${runId}-${input.hash}-verifier`,
      config: verifierJob(config, pairing.verifierPath),
    });
    verifier = trainedAdapter(job);
  }
  return {
    policy: { ...trainedAdapter(policyJob), mode: config.entropo.mode },
    verifier,
    ...(lambda0 ? { lambda0 } : {}),
  };
}

// ---------------------------------------------------------------------------------------------------------
// 5. TTS and selection on the held-out split, for the trained policy and each baseline.

export interface TtsPolicy {
  /** `entropo`, `sft` or `base`. */
  label: string;
  /** The LoRA adapter served for it; null for the base model. */
  adapter: string | null;
}

export async function ttsStageWorkflow(
  input: StageInput<{ policy: TtsPolicy; verifierAdapter: string | null }>,
): Promise<PolicyEvaluationRef> {
  const { runId, config } = input;
  const { policy, verifierAdapter } = input.inputs;
  const adapterName = `${runId}-${policy.label}`;
  const pool = await withModelServer(
    runId,
    `tts-${policy.label}`,
    config,
    policy.adapter ? [{ name: adapterName, path: policy.adapter }] : [],
    (endpoint) =>
      rollOut(
        runId,
        input.hash,
        `tts-${policy.label}`,
        config.suites.test,
        openaiPolicy(
          endpoint,
          policy.adapter ? adapterName : endpoint.model,
          policy.adapter ? `${config.model.base}+${policy.label}` : config.model.base,
        ),
        config.tts,
        config,
        config.seed + 2_000_000,
      ),
  );

  // Regression check of every finished episode's patch: the repo's own tests, never the hidden ones.
  const candidates = await cpu.listCandidates({
    trajectoriesPath: pool.trajectoriesPath,
    instances: config.suites.test,
  });
  const regression: Record<string, boolean | null> = {};
  if (config.selector.regressionCheck) {
    await mapWithConcurrency(
      candidates.filter((c) => c.finished && c.patchId !== null),
      config.tts.concurrency,
      async (c) => {
        const result = await executeChild(regressionCheckWorkflow, {
          workflowId: `${workflowInfo().workflowId}/regression/${c.taskId}/${c.index}`,
          args: [
            {
              runId: `${runId}.tts-${policy.label}.${input.hash}`,
              instanceId: c.taskId,
              instanceRef: c.instanceRef,
              patchId: c.patchId!,
              sandbox: config.sandbox,
              testTimeoutSec: config.grading.testTimeoutSec,
            },
          ],
        });
        regression[c.rolloutId] = result.regressionFree;
      },
    );
  }

  const scoring = await cpu.exportScoringData({
    runId,
    name: `tts-${policy.label}-${input.hash}`,
    trajectoriesPath: pool.trajectoriesPath,
  });
  let verifierScores: string | null = null;
  let entropyScores: string | null = null;
  if (scoring.rows > 0) {
    const maxLength = config.entropo.train.maxLength;
    if (verifierAdapter) {
      const job = await runOnGpu(prefix(), {
        command: 'score',
        jobId: `${runId}-${input.hash}-tts-${policy.label}-verifier`,
        config: scoreJob(config.model.base, 'verifier', scoring.path, verifierAdapter, maxLength),
      });
      verifierScores = `${job.jobDir}/scores.jsonl`;
    }
    const job = await runOnGpu(prefix(), {
      command: 'score',
      jobId: `${runId}-${input.hash}-tts-${policy.label}-entropy`,
      config: scoreJob(config.model.base, 'trajectory', scoring.path, policy.adapter, maxLength),
    });
    entropyScores = `${job.jobDir}/scores.jsonl`;
  }
  return cpu.evaluatePolicy({
    runId,
    policy: policy.label,
    modelName: policy.adapter ? `${config.model.base}+${policy.label}` : config.model.base,
    trajectoriesPath: pool.trajectoriesPath,
    n: config.tts.n,
    regression,
    verifierScores,
    entropyScores,
    selector: config.selector,
    seed: config.seed,
  });
}

/** A stage that cannot go on for a reason retrying will not change. */
export function stageFailed(message: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(message, 'StageFailed');
}
