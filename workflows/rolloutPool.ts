import {
  ApplicationFailure,
  continueAsNew,
  defineQuery,
  executeChild,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { PoolOutputs, RolloutPoolActivities } from '../activities/rolloutPool';
import { rootMessage } from '../domain/failures';
import {
  parseRolloutPoolConfig,
  policyName,
  type RolloutOutcome,
  type RolloutPoolConfig,
  type RolloutPoolProgress,
  rolloutSeed,
} from '../domain/rolloutPool';
import { mapWithConcurrency } from './concurrency';
import { rolloutWorkflow } from './rollout';

export const rolloutPoolProgressQuery = defineQuery<RolloutPoolProgress>('progress');

/** The pool's counts and the files it wrote (`.entropo/runs/<run>/`). */
export interface RolloutPoolResult extends PoolOutputs {
  runId: string;
}

/** What one run hands the next through continue-as-new: ids and counters only. */
interface PoolState {
  runId: string;
  tasks: { instanceId: string; instanceRef: string }[];
  /** Episodes started so far (in task-major order). */
  next: number;
  /** Artifact ids of the outcomes of earlier runs, one list per run. */
  outcomeChunks: string[];
  progress: RolloutPoolProgress;
}

const cpu = proxyActivities<RolloutPoolActivities>({
  startToCloseTimeout: '10 minutes',
  retry: { maximumAttempts: 5, nonRetryableErrorTypes: ['BadInput', 'HeldOutSuite'] },
});

/**
 * `entropo rollouts`: every task of a suite × N episodes of one policy.
 *   1. check the config and load the tasks (the demonstrator is refused on a held-out suite);
 *   2. one child workflow per episode, at most `concurrency` at once, each with its own seed;
 *   3. write the trajectories (JSONL), SWE-bench predictions and a summary.
 * A run continues-as-new after `rolloutsPerRun` episodes, carrying ids and counters; finished episodes are
 * recorded in history (or in the outcome chunks), so a resumed pool never runs them again.
 */
export async function rolloutPoolWorkflow(input: unknown, carried?: PoolState): Promise<RolloutPoolResult> {
  const config = parseConfig(input);
  const state = carried ?? (await startPool(config));
  upsertSearchAttributes({
    EntropoRunId: [state.runId],
    EntropoStage: ['rollouts'],
    EntropoModel: [policyName(config.policy)],
  });
  const progress = state.progress;
  setHandler(rolloutPoolProgressQuery, () => progress);

  const total = state.tasks.length * config.n;
  const end = Math.min(total, state.next + config.rolloutsPerRun);
  const jobs = Array.from({ length: end - state.next }, (_, i) => state.next + i);
  progress.stage = 'rolling out';
  const outcomes = await mapWithConcurrency(
    jobs,
    config.concurrency,
    async (job): Promise<RolloutOutcome> => {
      const task = Math.floor(job / config.n);
      const index = job % config.n;
      const { instanceId, instanceRef } = state.tasks[task]!;
      const seed = rolloutSeed(config.seed, task, config.n, index);
      progress.queued--;
      progress.running++;
      let outcome: RolloutOutcome;
      try {
        const result = await executeChild(rolloutWorkflow, {
          workflowId: `${workflowInfo().workflowId}/rollout/${instanceId}/${index}`,
          args: [
            {
              runId: state.runId,
              instanceId,
              instanceRef,
              policy:
                config.policy.kind === 'openai'
                  ? { kind: 'openai', name: policyName(config.policy), endpoint: config.policy.endpoint }
                  : { kind: 'demonstrator', name: config.policy.name },
              sampling: config.sampling,
              seed,
              limits: config.limits,
              sandbox: config.sandbox,
              testTimeoutSec: config.grading.testTimeoutSec,
            },
          ],
        });
        outcome = {
          instanceId,
          index,
          seed,
          exitReason: result.exitReason,
          resolved: result.resolved,
          steps: result.steps,
          generatedTokens: result.generatedTokens,
          trajectoryId: result.trajectoryId,
        };
      } catch (err) {
        // One broken episode must not stop the pool: count it and go on.
        outcome = {
          instanceId,
          index,
          seed,
          exitReason: 'failed',
          resolved: null,
          steps: 0,
          generatedTokens: 0,
          trajectoryId: null,
          error: rootMessage(err),
        };
      }
      progress.running--;
      progress.done++;
      if (outcome.exitReason === 'failed') progress.failed++;
      if (outcome.resolved) progress.resolved++;
      progress.generatedTokens += outcome.generatedTokens;
      return outcome;
    },
  );
  state.outcomeChunks.push(await cpu.storeOutcomes(outcomes));
  state.next = end;
  if (end < total) return continueAsNew<typeof rolloutPoolWorkflow>(input, state);

  progress.stage = 'writing';
  const written = await cpu.writePoolOutputs({
    runId: state.runId,
    outcomeChunks: state.outcomeChunks,
    modelName: policyName(config.policy),
  });
  progress.stage = 'done';
  return { runId: state.runId, ...written };
}

async function startPool(config: RolloutPoolConfig): Promise<PoolState> {
  const runId = config.runId ?? workflowInfo().workflowId.replace(/[^A-Za-z0-9._-]/g, '_');
  const tasks = await cpu.loadRolloutTasks({ file: config.instances, policyKind: config.policy.kind });
  const total = tasks.length * config.n;
  return {
    runId,
    tasks,
    next: 0,
    outcomeChunks: [],
    progress: {
      runId,
      stage: 'loading',
      total,
      queued: total,
      running: 0,
      done: 0,
      failed: 0,
      resolved: 0,
      generatedTokens: 0,
    },
  };
}

function parseConfig(input: unknown): RolloutPoolConfig {
  try {
    return parseRolloutPoolConfig(input);
  } catch (e) {
    throw ApplicationFailure.nonRetryable((e as Error).message, 'InvalidRunConfig');
  }
}
