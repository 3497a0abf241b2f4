import {
  ApplicationFailure,
  defineQuery,
  executeChild,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { PolicyEvaluationRef } from '../activities/evaluation';
import type { PipelineActivities } from '../activities/pipeline';
import type { ReportActivities, RunReportResult } from '../activities/report';
import { rootMessage } from '../domain/failures';
import {
  PIPELINE_STAGES,
  type PipelineConfig,
  type PipelineStage,
  parsePipelineConfig,
  stageKey,
} from '../domain/pipelineConfig';
import {
  pairingStageWorkflow,
  poolStageWorkflow,
  type StageInput,
  sftStageWorkflow,
  type TtsPolicy,
  trainingStageWorkflow,
  ttsStageWorkflow,
} from './pipelineStages';

/**
 * `entropo run <config>`: the EntroPO recipe end to end (DESIGN.md §1), one stage after another:
 *   1. sft       teacher episodes on the training split → SFT data → SFT adapter
 *   2. pool      the SFT student's episodes (and the teacher's) on the training split, graded
 *   3. pairing   DPO pairs and KTO labels per task; verifier data
 *   4. training  EntroPO (DPO or KTO) from the SFT model; the verifier
 *   5. tts       N episodes per held-out task per policy; regression check, verifier, hybrid selector
 *   6. report    resolve rate, pass@k, TTS curve, diversity, stage times; Markdown, HTML, predictions
 * Each stage is a child workflow keyed by (run id, stage, hash of its config and inputs); what it returns is
 * recorded, so the same run id resumes after a failure or a fixed config and skips what is done.
 */

export interface StageStatus {
  stage: PipelineStage;
  status: 'pending' | 'running' | 'done' | 'reused' | 'failed';
  /** The stage's child workflow while it runs (query it for detail: `entropo status` does). */
  workflowId?: string;
  startedAt?: number;
  wallMs?: number;
  error?: string;
}

export interface PipelineProgress {
  runId: string;
  stage: PipelineStage | 'done' | 'failed';
  stages: StageStatus[];
}

export const pipelineProgressQuery = defineQuery<PipelineProgress>('progress');

export interface PipelineResult extends RunReportResult {
  runId: string;
}

const cpu = proxyActivities<PipelineActivities & ReportActivities>({
  startToCloseTimeout: '30 minutes',
  retry: { maximumAttempts: 5 },
});

export async function pipelineWorkflow(input: unknown): Promise<PipelineResult> {
  const config = parseConfig(input);
  const runId = config.runId ?? workflowInfo().workflowId.replace(/[^A-Za-z0-9._-]/g, '_');
  const progress: PipelineProgress = {
    runId,
    stage: 'sft',
    stages: PIPELINE_STAGES.map((stage) => ({ stage, status: 'pending' })),
  };
  setHandler(pipelineProgressQuery, () => progress);
  upsertSearchAttributes({ EntropoRunId: [runId], EntropoModel: [config.model.base] });

  /**
   * Runs one stage: its recorded output when it finished before under the same key, else its child
   * workflow, recorded once it returns. A failure names the stage and keeps every artifact made so far.
   */
  async function stage<I, O>(
    name: PipelineStage,
    stageConfig: unknown,
    inputs: I,
    run: (workflowId: string, key: string) => Promise<O>,
  ): Promise<O> {
    const status = progress.stages.find((s) => s.stage === name)!;
    progress.stage = name;
    upsertSearchAttributes({ EntropoStage: [name] });
    const key = stageKey(runId, name, stageConfig, inputs);
    const started = Date.now();
    status.startedAt = started;
    const recorded = await cpu.lookupStage<{ output: O; wallMs: number }>(key);
    if (recorded !== null) {
      status.status = 'reused';
      // What the stage took when it ran (the report's stage times stay those of the real work).
      status.wallMs = recorded.wallMs;
      return recorded.output;
    }
    status.status = 'running';
    status.workflowId = `${workflowInfo().workflowId}/${name}-${hashOf(key)}`;
    try {
      const output = await run(status.workflowId, key);
      await cpu.recordStage(key, { output, wallMs: Date.now() - started });
      status.status = 'done';
      status.wallMs = Date.now() - started;
      return output;
    } catch (err) {
      status.status = 'failed';
      status.error = rootMessage(err);
      progress.stage = 'failed';
      throw ApplicationFailure.nonRetryable(`stage ${name} failed: ${status.error}`, 'StageFailed');
    }
  }
  const child =
    <I, O>(fn: (input: StageInput<I>) => Promise<O>) =>
    (inputs: I) =>
    (workflowId: string, key: string) =>
      executeChild(fn, { workflowId, args: [{ runId, hash: hashOf(key), config, inputs }] });

  const sft = await stage(
    'sft',
    {
      model: config.model,
      teacher: config.teacher,
      sft: config.sft,
      suite: config.suites.train,
      seed: config.seed,
      // The teacher's episodes run with the pool's sampling and limits (so pairs share their prefix).
      episodes: { sampling: config.pool.sampling, limits: config.pool.limits },
      sandbox: config.sandbox,
      grading: config.grading,
    },
    {},
    child(sftStageWorkflow)({}),
  );
  const pool = await stage(
    'pool',
    {
      pool: config.pool,
      suite: config.suites.train,
      serving: config.serving,
      model: config.model,
      seed: config.seed,
      sandbox: config.sandbox,
      grading: config.grading,
    },
    { sftAdapter: sft.adapter, teacherTrajectories: sft.teacher.trajectoriesPath },
    child(poolStageWorkflow)({ sftAdapter: sft.adapter, teacherTrajectories: sft.teacher.trajectoriesPath }),
  );
  const pairing = await stage(
    'pairing',
    { pairing: config.pairing, seed: config.seed, mode: config.entropo.mode },
    { sources: pool.sources },
    child(pairingStageWorkflow)({ sources: pool.sources }),
  );
  const training = await stage(
    'training',
    {
      entropo: config.entropo,
      verifier: config.verifier,
      model: config.model.base,
      seed: config.seed,
      // Only when asked for, so the keys (and ids) of runs without the baseline stay what they were.
      ...(config.baselines.includes('lambda0') ? { lambda0Baseline: true } : {}),
    },
    { sftAdapter: sft.adapter, pairing },
    child(trainingStageWorkflow)({ sftAdapter: sft.adapter, pairing }),
  );
  const policies: TtsPolicy[] = [{ label: 'entropo', adapter: training.policy.adapter }];
  if (config.baselines.includes('sft')) policies.push({ label: 'sft', adapter: sft.adapter });
  if (config.baselines.includes('base')) policies.push({ label: 'base', adapter: null });
  if (training.lambda0) policies.push({ label: 'lambda0', adapter: training.lambda0.adapter });
  const evaluations = await stage(
    'tts',
    {
      tts: config.tts,
      selector: config.selector,
      suite: config.suites.test,
      seed: config.seed,
      serving: config.serving,
      model: config.model,
      sandbox: config.sandbox,
      grading: config.grading,
    },
    { policies, verifier: training.verifier?.adapter ?? null },
    async (workflowId, key) => {
      const results: PolicyEvaluationRef[] = [];
      // One policy after another: each holds the model server (on CPU, every core) while it rolls out.
      for (const policy of policies) {
        results.push(
          await executeChild(ttsStageWorkflow, {
            workflowId: `${workflowId}/${policy.label}`,
            args: [
              {
                runId,
                hash: hashOf(key),
                config,
                inputs: { policy, verifierAdapter: training.verifier?.adapter ?? null },
              },
            ],
          }),
        );
      }
      return { evaluations: results };
    },
  );
  progress.stage = 'report';
  const reportStatus = progress.stages.find((s) => s.stage === 'report')!;
  reportStatus.status = 'running';
  const reportStarted = Date.now();
  const report = await cpu.writeRunReport({
    runId,
    config,
    stages: progress.stages,
    sft,
    pool,
    pairing,
    training,
    evaluations: evaluations.evaluations,
  });
  reportStatus.status = 'done';
  reportStatus.wallMs = Date.now() - reportStarted;
  progress.stage = 'done';
  return { runId, ...report };
}

/** The short form of a stage key's hash, for names. */
function hashOf(key: string): string {
  return key.slice(key.lastIndexOf('/') + 1, key.lastIndexOf('/') + 9);
}

function parseConfig(input: unknown): PipelineConfig {
  try {
    return parsePipelineConfig(input);
  } catch (e) {
    throw ApplicationFailure.nonRetryable((e as Error).message, 'InvalidRunConfig');
  }
}
