/**
 * Task queue names. Each worker role polls its own queue; a sandbox worker also polls a queue of its own
 * (`<prefix>-sandbox@<identity>`) so that every command for a sandbox reaches the worker holding it.
 * Workflows run on the cpu queue and derive the other names from it, so several deployments (or test
 * runs) can share one Temporal namespace under different prefixes.
 */
export const DEFAULT_QUEUE_PREFIX = 'entropo';

export type WorkerRole = 'cpu' | 'sandbox' | 'gpu' | 'llm';
export const WORKER_ROLES: readonly WorkerRole[] = ['cpu', 'sandbox', 'gpu', 'llm'];

export function roleQueue(prefix: string, role: WorkerRole): string {
  return `${prefix}-${role}`;
}

export function sandboxWorkerQueue(prefix: string, identity: string): string {
  return `${prefix}-sandbox@${identity}`;
}

/**
 * The prefix of a role queue name (`entropo-cpu` → `entropo`). Our workers only poll role queues, so a
 * workflow always runs on one in production; any other name (a replay worker's queue) is kept whole.
 */
export function queuePrefixOf(queue: string): string {
  const match = /^(.*)-(cpu|sandbox|gpu|llm)$/.exec(queue);
  return match ? match[1]! : queue;
}

/**
 * The queue of one accelerator of a gpu worker (`<prefix>-gpu@<host>/<device>`), served with one slot so a
 * training job or a model server start owns the device. Workflows get one from `claimGpuDevice` on the
 * shared gpu queue and route a stage's engine jobs and serving calls there.
 */
export function gpuDeviceQueue(prefix: string, host: string, device: string): string {
  return `${prefix}-gpu@${host}/${device}`;
}
