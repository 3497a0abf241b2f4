import { Context } from '@temporalio/activity';

/**
 * Heartbeats every 2 s while `work` runs, so that a worker that dies mid-activity is noticed within the
 * activity's heartbeat timeout instead of its (long) start-to-close timeout.
 */
export async function withHeartbeat<T>(details: unknown, work: () => Promise<T>): Promise<T> {
  const context = Context.current();
  context.heartbeat(details);
  const timer = setInterval(() => context.heartbeat(details), 2000);
  try {
    return await work();
  } finally {
    clearInterval(timer);
  }
}
