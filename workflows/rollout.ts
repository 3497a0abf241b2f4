import {
  ActivityFailure,
  CancellationScope,
  continueAsNew,
  executeChild,
  isCancellation,
  proxyActivities,
  TimeoutFailure,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { SandboxActivities } from '../activities';
import type {
  LlmActivities,
  RolloutCpuActivities,
  RolloutSandboxActivities,
} from '../activities/rolloutActivities';
import type { EpisodeLimits, ExitReason, StepOutcome } from '../domain/agent/limits';
import { nextStep } from '../domain/agent/limits';
import { EMPTY_CONTENT_ID } from '../domain/artifactIds';
import { rootMessage } from '../domain/failures';
import { DEFAULT_CALL_RETRY, type LlmEndpoint, type Sampling } from '../domain/llmPolicy';
import type { SandboxConfig } from '../domain/runConfig';
import { queuePrefixOf, roleQueue } from '../domain/taskQueues';
import { gradeInstanceWorkflow } from './gradeInstance';
import { destroyAbandonedSandbox, sandboxIdFor } from './sandboxes';

/**
 * One episode of a policy on one task, in its own sandbox (DESIGN.md §4):
 *   open a sandbox and the conversation → loop { ask the policy; run its call as a step } until an exit
 *   reason → grade the patch in a fresh sandbox → write the trajectory record.
 * Durability is wrapped around that loop: every step is recorded under (rollout, step) so nothing is run
 * twice; after each step that may change the repository its state is checkpointed; a lost sandbox is made
 * again on any worker and restored from the newest checkpoint; the workflow continues-as-new when Temporal
 * suggests it, carrying only ids.
 */

export interface RolloutPolicy {
  /** `openai` (any compatible endpoint, the engine's server included) or `demonstrator` (gold patch, training splits only). */
  kind: 'openai' | 'demonstrator';
  endpoint?: LlmEndpoint;
  /** Names the policy in trajectories and predictions (the model or adapter name). */
  name: string;
}

export interface RolloutInput {
  runId: string;
  instanceId: string;
  instanceRef: string;
  policy: RolloutPolicy;
  sampling: Sampling;
  seed: number | null;
  limits: EpisodeLimits;
  sandbox: SandboxConfig;
  testTimeoutSec: number;
  /** Set by continue-as-new. */
  state?: RolloutState;
}

interface RolloutState {
  startedAt: string;
  sandboxId: string;
  sandboxQueue: string;
  restarts: number;
  baseCommit: string;
  conversationId: string;
  systemPromptId: string;
  taskMessageId: string;
  lastStepId: string | null;
  checkpoint: { patchId: string; undoHistoryId: string } | null;
  steps: number;
  lastContextTokens: number;
  generatedTokens: number;
  /** Time spent in model calls and tools so far (the episode's clock; no wall clock in workflow code). */
  elapsedMs: number;
  outcome: StepOutcome;
  exitDetail?: string;
}

export interface RolloutResult {
  rolloutId: string;
  instanceId: string;
  exitReason: ExitReason;
  steps: number;
  generatedTokens: number;
  resolved: boolean | null;
  trajectoryId: string;
}

/** Continue-as-new after this many steps in one run even if Temporal does not ask (keeps replays short). */
const STEPS_PER_RUN = 100;

export async function rolloutWorkflow(input: RolloutInput): Promise<RolloutResult> {
  const info = workflowInfo();
  const prefix = queuePrefixOf(info.taskQueue);
  upsertSearchAttributes({
    EntropoRunId: [input.runId],
    EntropoStage: ['rollout'],
    EntropoTaskId: [input.instanceId],
  });
  const llm = proxyActivities<LlmActivities>({
    taskQueue: roleQueue(prefix, 'llm'),
    startToCloseTimeout: `${(input.policy.endpoint?.requestTimeoutSec ?? 600) * ((input.policy.endpoint?.maxRetries ?? 4) + 1) + 60} seconds`,
    heartbeatTimeout: '30 seconds', // the call heartbeats every 2 s: silence means its worker is gone
    retry: {
      maximumAttempts: input.policy.endpoint?.callAttempts ?? DEFAULT_CALL_RETRY.callAttempts,
      initialInterval: `${input.policy.endpoint?.callRetryIntervalSec ?? DEFAULT_CALL_RETRY.callRetryIntervalSec} seconds`,
      nonRetryableErrorTypes: ['LlmRejected', 'LlmConfig'],
    },
  });

  const state = input.state ?? (await openEpisode(input, prefix));
  try {
    return await runEpisode(input, state, prefix, llm);
  } catch (err) {
    // Cancelled (the pool was cancelled): the sandbox goes with it, whatever the cancellation interrupted.
    if (isCancellation(err)) {
      await CancellationScope.nonCancellable(() =>
        sandboxActivities(state.sandboxQueue, input.sandbox.heartbeatTimeoutSec, input.limits)
          .destroySandbox(state.sandboxId)
          .catch(() => undefined),
      );
    }
    throw err;
  }
}

async function runEpisode(
  input: RolloutInput,
  state: RolloutState,
  prefix: string,
  llm: LlmActivities,
): Promise<RolloutResult> {
  const info = workflowInfo();
  const onSandbox = () =>
    sandboxActivities(state.sandboxQueue, input.sandbox.heartbeatTimeoutSec, input.limits);
  let runSteps = 0;
  // Destroys of sandboxes a restart left behind; awaited before the episode ends or continues as new.
  const abandoned: Promise<unknown>[] = [];

  for (;;) {
    const next = nextStep(
      input.limits,
      {
        steps: state.steps,
        lastContextTokens: state.lastContextTokens,
        generatedTokens: state.generatedTokens,
        elapsedMs: state.elapsedMs,
      },
      state.outcome,
    );
    if (next.kind === 'exit') {
      await Promise.all(abandoned);
      return finish(input, state, next.reason, prefix);
    }
    if (runSteps >= STEPS_PER_RUN || workflowInfo().continueAsNewSuggested) {
      await Promise.all(abandoned);
      return continueAsNew<typeof rolloutWorkflow>({ ...input, state });
    }
    const stepIndex = state.steps + 1;

    // 1. The policy's reply (recorded per step, so a retry never samples a second one).
    let turn: Awaited<ReturnType<LlmActivities['callPolicy']>>;
    try {
      turn =
        input.policy.kind === 'demonstrator'
          ? await onSandbox().demonstratorTurn({
              sandboxId: state.sandboxId,
              instanceRef: input.instanceRef,
              stepIndex,
            })
          : await llm.callPolicy({
              rolloutId: info.workflowId,
              stepIndex,
              endpoint: input.policy.endpoint!,
              sampling: {
                ...input.sampling,
                maxTokens: Math.min(input.sampling.maxTokens, next.generatedTokensLeft),
              },
              messagesId: state.conversationId,
              seed: input.seed === null ? undefined : input.seed + stepIndex,
            });
    } catch (err) {
      state.outcome = 'llm_error';
      state.exitDetail = rootMessage(err);
      continue;
    }
    state.steps = stepIndex;
    state.elapsedMs += turn.latencyMs;
    if (turn.kind === 'context_length') {
      state.outcome = 'context_length_exceeded';
      state.exitDetail = turn.message;
      continue;
    }
    state.lastContextTokens = turn.promptTokens + turn.completionTokens;
    state.generatedTokens += turn.completionTokens;

    // 2. The step in the sandbox; a lost sandbox is made again elsewhere and restored, then the step re-runs.
    for (;;) {
      try {
        const step = await onSandbox().runAgentStep({
          rolloutId: info.workflowId,
          stepIndex,
          sandboxId: state.sandboxId,
          baseCommit: state.baseCommit,
          conversationId: state.conversationId,
          completionId: turn.completionId,
          tokensIn: turn.promptTokens,
          tokensOut: turn.completionTokens,
          llmMs: turn.latencyMs,
          checkpoint: state.checkpoint,
          previousStepId: state.lastStepId,
          warning: next.warning,
          commandTimeoutSec: next.commandTimeoutSec,
          outputLimitBytes: input.sandbox.outputLimitBytes,
        });
        state.conversationId = step.conversationId;
        state.lastStepId = step.stepId;
        state.checkpoint = step.checkpoint;
        state.elapsedMs += step.toolMs;
        state.outcome = step.submitted ? 'submitted' : 'observed';
        break;
      } catch (err) {
        const lost = sandboxLost(err) ? await replaceSandbox(input, state, prefix, abandoned) : err;
        if (lost !== null) {
          state.outcome = 'sandbox_error';
          state.exitDetail = rootMessage(lost);
          break;
        }
      }
    }
    runSteps++;
  }
}

function sandboxActivities(taskQueue: string, heartbeatTimeoutSec: number, limits: EpisodeLimits) {
  return proxyActivities<RolloutSandboxActivities & Pick<SandboxActivities, 'destroySandbox'>>({
    taskQueue,
    // The sandbox exists on that worker only: if it is gone, retrying on the same queue cannot help.
    scheduleToStartTimeout: `${Math.max(15, 2 * heartbeatTimeoutSec)} seconds`,
    heartbeatTimeout: `${heartbeatTimeoutSec} seconds`,
    startToCloseTimeout: `${limits.commandTimeoutSec * 3 + 120} seconds`,
    retry: { maximumAttempts: 2, nonRetryableErrorTypes: ['CheckpointRestoreFailed'] },
  });
}

async function createSandboxFor(input: RolloutInput, prefix: string, sandboxId: string) {
  const { createSandbox } = proxyActivities<SandboxActivities>({
    taskQueue: roleQueue(prefix, 'sandbox'),
    startToCloseTimeout: '10 minutes',
    heartbeatTimeout: `${input.sandbox.heartbeatTimeoutSec} seconds`,
    retry: { maximumAttempts: 5 },
  });
  return createSandbox({
    sandboxId,
    instanceRef: input.instanceRef,
    runId: input.runId,
    workflowId: workflowInfo().workflowId,
    sandbox: input.sandbox,
  });
}

async function openEpisode(input: RolloutInput, prefix: string): Promise<RolloutState> {
  // A sandbox whose worker dies before the conversation opens is made again elsewhere, as in a step.
  const abandoned: Promise<unknown>[] = [];
  for (let restarts = 0; ; restarts++) {
    const sandboxId = sandboxIdFor(workflowInfo().workflowId, restarts);
    const handle = await createSandboxFor(input, prefix, sandboxId);
    let opened: Awaited<ReturnType<RolloutSandboxActivities['startConversation']>>;
    try {
      opened = await sandboxActivities(
        handle.taskQueue,
        input.sandbox.heartbeatTimeoutSec,
        input.limits,
      ).startConversation({
        sandboxId,
        instanceRef: input.instanceRef,
        commandTimeoutSec: input.limits.commandTimeoutSec,
      });
    } catch (err) {
      if (!sandboxLost(err) || restarts >= input.sandbox.maxSandboxRestarts) throw err;
      abandoned.push(destroyAbandonedSandbox(handle.taskQueue, sandboxId));
      continue;
    }
    await Promise.all(abandoned);
    return {
      startedAt: new Date().toISOString(),
      sandboxId,
      sandboxQueue: handle.taskQueue,
      restarts,
      baseCommit: opened.baseCommit,
      conversationId: opened.conversationId,
      systemPromptId: opened.systemPromptId,
      taskMessageId: opened.taskMessageId,
      lastStepId: null,
      checkpoint: null,
      steps: 0,
      lastContextTokens: 0,
      generatedTokens: 0,
      elapsedMs: 0,
      outcome: 'observed',
    };
  }
}

/**
 * A fresh sandbox on any worker, holding the newest checkpoint; the lost one died with its worker (and so
 * may a replacement, which is replaced in turn). Returns null, or the failure that ends the episode once
 * `maxSandboxRestarts` is spent or a failure is not a lost sandbox.
 */
async function replaceSandbox(
  input: RolloutInput,
  state: RolloutState,
  prefix: string,
  abandoned: Promise<unknown>[],
): Promise<unknown> {
  for (;;) {
    if (state.restarts >= input.sandbox.maxSandboxRestarts)
      return new Error(`sandbox lost ${state.restarts + 1} times (sandbox.maxSandboxRestarts)`);
    state.restarts++;
    abandoned.push(destroyAbandonedSandbox(state.sandboxQueue, state.sandboxId));
    const sandboxId = sandboxIdFor(workflowInfo().workflowId, state.restarts);
    const handle = await createSandboxFor(input, prefix, sandboxId);
    state.sandboxId = sandboxId;
    state.sandboxQueue = handle.taskQueue;
    if (!state.checkpoint) return null;
    try {
      await sandboxActivities(
        handle.taskQueue,
        input.sandbox.heartbeatTimeoutSec,
        input.limits,
      ).restoreCheckpoint({
        sandboxId,
        checkpoint: state.checkpoint,
        baseCommit: state.baseCommit,
        commandTimeoutSec: input.limits.commandTimeoutSec,
      });
      return null;
    } catch (err) {
      if (!sandboxLost(err)) return err;
    }
  }
}

/** Ends the episode: drop the sandbox, grade the patch in a fresh one, write the trajectory record. */
async function finish(
  input: RolloutInput,
  state: RolloutState,
  exitReason: ExitReason,
  prefix: string,
): Promise<RolloutResult> {
  await sandboxActivities(state.sandboxQueue, input.sandbox.heartbeatTimeoutSec, input.limits)
    .destroySandbox(state.sandboxId)
    .catch(() => undefined); // a lost sandbox is the sweeper's
  const info = workflowInfo();
  const cpu = proxyActivities<RolloutCpuActivities>({
    taskQueue: roleQueue(prefix, 'cpu'),
    startToCloseTimeout: '5 minutes',
    retry: { maximumAttempts: 5 },
  });
  const patchId = state.checkpoint?.patchId ?? null;
  // Nothing changed: nothing to grade, and nothing resolved.
  let resolved = false;
  let gradingReportId: string | null = null;
  if (patchId !== null && patchId !== EMPTY_CONTENT_ID) {
    const grade = await executeChild(gradeInstanceWorkflow, {
      workflowId: `${info.workflowId}/grade`,
      args: [
        {
          runId: input.runId,
          instanceId: input.instanceId,
          instanceRef: input.instanceRef,
          patch: { kind: 'model', patchId },
          sandbox: input.sandbox,
          testTimeoutSec: input.testTimeoutSec,
        },
      ],
    });
    resolved = grade.resolved;
    gradingReportId = grade.reportId;
  }
  const trajectoryId = await cpu.writeTrajectory({
    runId: input.runId,
    rolloutId: info.workflowId,
    taskId: input.instanceId,
    policy: {
      kind: input.policy.kind,
      model: input.policy.name,
      ...(input.policy.endpoint ? { baseUrl: input.policy.endpoint.baseUrl } : {}),
    },
    sampling: input.sampling,
    seed: input.seed,
    limits: input.limits,
    systemPromptId: state.systemPromptId,
    taskMessageId: state.taskMessageId,
    lastStepId: state.lastStepId,
    exitReason,
    ...(state.exitDetail ? { exitDetail: state.exitDetail } : {}),
    patchId,
    gradingReportId,
    resolved,
    startedAt: state.startedAt,
    finishedAt: new Date().toISOString(),
  });
  return {
    rolloutId: info.workflowId,
    instanceId: input.instanceId,
    exitReason,
    steps: state.steps,
    generatedTokens: state.generatedTokens,
    resolved,
    trajectoryId,
  };
}

/** The sandbox's worker stopped heartbeating or never picked the step up: the sandbox is gone with it. */
function sandboxLost(err: unknown): boolean {
  return err instanceof ActivityFailure && err.cause instanceof TimeoutFailure;
}
