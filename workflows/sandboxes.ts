import { proxyActivities } from '@temporalio/workflow';
import type { SandboxActivities } from '../activities';

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
