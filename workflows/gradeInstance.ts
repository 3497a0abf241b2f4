import {
  ActivityFailure,
  ApplicationFailure,
  patched,
  proxyActivities,
  TimeoutFailure,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { SandboxActivities } from '../activities';
import type { GradeSummary, PatchChoice } from '../domain/grading';
import type { SandboxConfig } from '../domain/runConfig';
import { queuePrefixOf, roleQueue } from '../domain/taskQueues';
import { destroyAbandonedSandbox, sandboxIdFor } from './sandboxes';

export interface GradeInstanceInput {
  runId: string;
  instanceId: string;
  instanceRef: string;
  patch: PatchChoice;
  sandbox: SandboxConfig;
  testTimeoutSec: number;
}

/**
 * Grades one patch on one instance in its own sandbox:
 *   create a sandbox (any sandbox worker) → grade it (on the worker holding it) → destroy it.
 * If the worker holding the sandbox vanishes (no heartbeat), the grading restarts in a fresh sandbox on
 * another worker; a grading that finished is never repeated. The abandoned sandbox is destroyed by its
 * worker if that worker is still alive.
 */
export async function gradeInstanceWorkflow(input: GradeInstanceInput): Promise<GradeSummary> {
  const info = workflowInfo();
  upsertSearchAttributes({
    EntropoRunId: [input.runId],
    EntropoStage: ['grade'],
    EntropoTaskId: [input.instanceId],
  });
  const prefix = queuePrefixOf(info.taskQueue);
  const { createSandbox } = proxyActivities<SandboxActivities>({
    taskQueue: roleQueue(prefix, 'sandbox'),
    startToCloseTimeout: '10 minutes',
    heartbeatTimeout: `${input.sandbox.heartbeatTimeoutSec} seconds`,
    retry: { maximumAttempts: 5 },
  });

  // Destroys of sandboxes left behind by restarts: the grading goes on meanwhile, and ends after them.
  const abandoned: Promise<unknown>[] = [];
  try {
    for (let restart = 0; ; restart++) {
      const sandboxId = sandboxIdFor(info.workflowId, restart);
      const sandbox = await createSandbox({
        sandboxId,
        instanceRef: input.instanceRef,
        runId: input.runId,
        workflowId: info.workflowId,
        sandbox: input.sandbox,
      });
      const onSandboxWorker = proxyActivities<SandboxActivities>({
        taskQueue: sandbox.taskQueue,
        // The sandbox exists on that worker only: if it is gone, retrying on the same queue cannot help.
        scheduleToStartTimeout: '1 minute',
        heartbeatTimeout: `${input.sandbox.heartbeatTimeoutSec} seconds`,
        startToCloseTimeout: `${Math.ceil(input.testTimeoutSec + 20 * input.sandbox.commandTimeoutSec)} seconds`,
        retry: { maximumAttempts: 1 },
      });
      let restartable = false;
      try {
        return await onSandboxWorker.gradeInSandbox({
          sandboxId,
          instanceId: input.instanceId,
          instanceRef: input.instanceRef,
          patch: input.patch,
          testTimeoutSec: input.testTimeoutSec,
          commandTimeoutSec: input.sandbox.commandTimeoutSec,
          outputLimitBytes: input.sandbox.outputLimitBytes,
        });
      } catch (err) {
        restartable = needsFreshSandbox(err);
        if (!restartable || restart >= input.sandbox.maxSandboxRestarts) throw err;
      } finally {
        if (!restartable) await onSandboxWorker.destroySandbox(sandboxId).catch(() => undefined);
        else if (patched('destroy-abandoned-sandbox')) {
          // The sandbox's worker may be alive (its heartbeats stalled, or the grading failed in a way a fresh
          // sandbox can cure): then it still holds the sandbox and would keep it until it stops. Ask it to
          // destroy it, best effort and briefly, as the grading waits for this before it ends: a live worker
          // picks it up at once; a dead one never does, and its sandbox is swept by any worker on its host.
          // What a slow worker misses, its sweeper removes once this workflow has closed.
          abandoned.push(destroyAbandonedSandbox(sandbox.taskQueue, sandboxId));
        }
      }
    }
  } finally {
    await Promise.all(abandoned);
  }
}

/**
 * The sandbox's worker stopped heartbeating or never picked the command up (the sandbox is gone), or the
 * grading hit a transient error: start over in a fresh sandbox. Non-retryable failures (bad instance) are final.
 */
function needsFreshSandbox(err: unknown): boolean {
  if (!(err instanceof ActivityFailure)) return false;
  if (err.cause instanceof ApplicationFailure && err.cause.nonRetryable) return false;
  return err.cause instanceof TimeoutFailure || err.cause instanceof ApplicationFailure;
}
