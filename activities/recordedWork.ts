import { canonicalJson } from '../domain/canonicalJson';
import type { SandboxBackendName } from '../domain/runConfig';
import type { ArtifactStore } from './artifacts';
import type { GradeRequest } from './grading';

/**
 * Finished work survives a lost completion. When the Temporal server is down as an activity finishes, the
 * worker's report of the result is retried for a few seconds and then dropped; the server, when it is back,
 * times the attempt out (a late report of a timed-out attempt is rejected whatever the worker does) and the
 * workflow tries again. So each finished unit of work (a grading; later a rollout step or a training job)
 * is recorded in the artifact store under its identity, and a later attempt with the same identity returns
 * the recorded result instead of doing the work again.
 */

/**
 * The identity of one unit of work: what it is and everything its result depends on. Two attempts with the
 * same key are the same work; anything that could change the result belongs in the key.
 */
export type WorkKey = { work: string } & Record<string, unknown>;

/**
 * Returns the result recorded under `key`, or does the work, records its result and returns it. Neither a
 * failure nor the result of an attempt cancelled meanwhile (`signal`: its commands were killed, so its
 * result may be cut short) is recorded: the next attempt does the work.
 */
export async function recorded<T>(
  store: ArtifactStore,
  key: WorkKey,
  work: () => Promise<T>,
  options: { signal?: AbortSignal; onReuse?: () => void } = {},
): Promise<T> {
  const name = canonicalJson(key);
  const earlier = await store.getRecord<T>(name);
  if (earlier) {
    options.onReuse?.();
    return earlier.value;
  }
  const result = await work();
  if (!options.signal?.aborted) await store.putRecord(name, result);
  return result;
}

/**
 * The identity of a grading: the workflow it belongs to (its id names the run, the instance and the patch
 * kind, so re-running a run id resumes while another run grades afresh), the instance's content (its
 * artifact id), the patch (gold and empty are fixed by the instance; a model patch by its content id), the
 * grading limits and the sandbox backend.
 */
export function gradingWorkKey(
  request: GradeRequest,
  context: { namespace: string; workflowId: string; backend: SandboxBackendName },
): WorkKey {
  return {
    work: 'grading',
    version: 1,
    namespace: context.namespace,
    workflowId: context.workflowId,
    instanceRef: request.instanceRef,
    patch: request.patch,
    backend: context.backend,
    testTimeoutSec: request.testTimeoutSec,
    commandTimeoutSec: request.commandTimeoutSec,
    outputLimitBytes: request.outputLimitBytes,
  };
}

export { canonicalJson };
