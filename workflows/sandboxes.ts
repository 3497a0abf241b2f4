import {
  ActivityFailure,
  ApplicationFailure,
  patched,
  proxyActivities,
  TimeoutFailure,
  workflowInfo,
} from '@temporalio/workflow';
import type { SandboxActivities } from '../activities';
import type { SandboxConfig } from '../domain/runConfig';
import { queuePrefixOf, roleQueue } from '../domain/taskQueues';

/** What gradings and rollouts do alike with the sandboxes they hold (workflow code). */

/** The sandbox a workflow makes on its `restart`-th try: derived from its id, so a replay names the same one. */
export function sandboxIdFor(workflowId: string, restart: number): string {
  return `${workflowId}-${restart}`.replace(/[^A-Za-z0-9._-]/g, '_');
}

/**
 * Asks the worker that held a lost sandbox to destroy it: its heartbeats may only have stalled, and a live
 * worker would otherwise keep the sandbox until it stops. Best effort and brief (a dead worker never picks
 * it up, and any worker on its host sweeps what it left); never fails.
 */
export function destroyAbandonedSandbox(taskQueue: string, sandboxId: string): Promise<unknown> {
  return proxyActivities<Pick<SandboxActivities, 'destroySandbox'>>({
    taskQueue,
    scheduleToStartTimeout: '15 seconds',
    startToCloseTimeout: '2 minutes',
    retry: { maximumAttempts: 2 },
  })
    .destroySandbox(sandboxId)
    .catch(() => undefined);
}

/**
 * Does one piece of work in a sandbox of its own:
 *   create a sandbox (any sandbox worker) → `work` (on the worker holding it) → destroy it.
 * `work` gets the activities of that worker's own queue, each allowed `workTimeoutSec`. If the worker
 * holding the sandbox vanishes (no heartbeat), the work restarts in a fresh sandbox on another worker (up to
 * `sandbox.maxSandboxRestarts` times); work whose result was recorded is never repeated. The abandoned
 * sandbox is destroyed by its worker if that worker is still alive.
 */
export async function inOwnSandbox<T>(
  input: { runId: string; instanceRef: string; sandbox: SandboxConfig },
  workTimeoutSec: number,
  work: (onSandboxWorker: SandboxActivities, sandboxId: string) => Promise<T>,
): Promise<T> {
  const info = workflowInfo();
  const { createSandbox } = proxyActivities<SandboxActivities>({
    taskQueue: roleQueue(queuePrefixOf(info.taskQueue), 'sandbox'),
    startToCloseTimeout: '10 minutes',
    heartbeatTimeout: `${input.sandbox.heartbeatTimeoutSec} seconds`,
    retry: { maximumAttempts: 5 },
  });

  // Destroys of sandboxes left behind by restarts: the work goes on meanwhile, and ends after them.
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
        startToCloseTimeout: `${Math.ceil(workTimeoutSec)} seconds`,
        retry: { maximumAttempts: 1 },
      });
      let restartable = false;
      try {
        return await work(onSandboxWorker, sandboxId);
      } catch (err) {
        restartable = needsFreshSandbox(err);
        if (!restartable || restart >= input.sandbox.maxSandboxRestarts) throw err;
      } finally {
        if (!restartable) await onSandboxWorker.destroySandbox(sandboxId).catch(() => undefined);
        else if (patched('destroy-abandoned-sandbox')) {
          // The sandbox's worker may be alive (its heartbeats stalled, or the work failed in a way a fresh
          // sandbox can cure): then it still holds the sandbox and would keep it until it stops. Ask it to
          // destroy it, best effort and briefly, as the work waits for this before it ends: a live worker
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
 * work hit a transient error: start over in a fresh sandbox. Non-retryable failures (bad instance) are final.
 */
function needsFreshSandbox(err: unknown): boolean {
  if (!(err instanceof ActivityFailure)) return false;
  if (err.cause instanceof ApplicationFailure && err.cause.nonRetryable) return false;
  return err.cause instanceof TimeoutFailure || err.cause instanceof ApplicationFailure;
}
