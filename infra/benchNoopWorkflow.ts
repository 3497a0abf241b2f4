/**
 * The floor under `bench:rollouts`' per-turn figure: a workflow that only calls a no-op activity on another
 * task queue, `n` times in a row. Each call is one workflow task and one activity task through the server,
 * as each half of an agent turn is. Bundled by the benchmark's own worker, never by the product's.
 */
import { proxyActivities } from '@temporalio/workflow';

export interface NoopActivities {
  noop(): Promise<number>;
}

export async function noopLoopWorkflow(n: number, activityQueue: string): Promise<number> {
  const { noop } = proxyActivities<NoopActivities>({
    startToCloseTimeout: '1 minute',
    taskQueue: activityQueue,
  });
  let total = 0;
  for (let i = 0; i < n; i++) total += await noop();
  return total;
}
