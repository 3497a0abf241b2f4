import { ApplicationFailure } from '@temporalio/activity';
import type { TaskInstance } from '../domain/instance';
import type { ArtifactStore } from './artifacts';
import { withHeartbeat } from './heartbeat';
import { BwrapMissingError, type LocalSandboxBackend } from './localSandbox';

export interface SandboxHandle {
  sandboxId: string;
  /** The worker-specific task queue of the worker that holds the sandbox: send its commands there. */
  taskQueue: string;
}

/** Creates a sandbox for an instance on this worker and tells the workflow where to send its commands. */
export async function createSandbox(
  deps: { store: ArtifactStore; sandboxes: LocalSandboxBackend; ownTaskQueue: string },
  request: { sandboxId: string; instanceRef: string },
): Promise<SandboxHandle> {
  const instance = await deps.store.getJson<TaskInstance>(request.instanceRef);
  if (!instance.source) {
    throw ApplicationFailure.nonRetryable(
      `instance ${instance.instance_id} has no "source" (local git repo or tarball) for the local sandbox`,
      'InvalidInstance',
    );
  }
  const source = instance.source;
  try {
    await withHeartbeat({ sandboxId: request.sandboxId }, () =>
      deps.sandboxes.create({ sandboxId: request.sandboxId, source, baseCommit: instance.base_commit }),
    );
  } catch (e) {
    if (e instanceof BwrapMissingError) throw ApplicationFailure.nonRetryable(e.message, 'BwrapMissing');
    throw e;
  }
  return { sandboxId: request.sandboxId, taskQueue: deps.ownTaskQueue };
}

export async function destroySandbox(
  deps: { sandboxes: LocalSandboxBackend },
  sandboxId: string,
): Promise<void> {
  await deps.sandboxes.destroy(sandboxId);
}
