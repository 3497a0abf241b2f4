import { ApplicationFailure } from '@temporalio/activity';
import { sandboxBackendFor, type TaskInstance, taskImageName } from '../domain/instance';
import type { SandboxBackendName, SandboxConfig } from '../domain/runConfig';
import type { ArtifactStore } from './artifacts';
import { DockerImageMissingError, SandboxStartError } from './dockerSandbox';
import { withHeartbeat } from './heartbeat';
import { BaseCommitMissingError, BwrapMissingError } from './localSandbox';
import type { SandboxPool } from './sandboxPool';

export interface SandboxHandle {
  sandboxId: string;
  backend: SandboxBackendName;
  /** The worker-specific task queue of the worker that holds the sandbox: send its commands there. */
  taskQueue: string;
}

export interface CreateSandboxInput {
  sandboxId: string;
  instanceRef: string;
  runId?: string;
  /** The workflow the sandbox serves; the sweeper removes the sandbox once it is closed. */
  workflowId?: string;
  /** Backend, limits and docker settings of the run (absent in histories from before the docker backend). */
  sandbox?: Pick<SandboxConfig, 'backend' | 'limits' | 'docker'>;
}

/** Errors a retry cannot cure: say so to Temporal, with the message that tells the user what to do. */
const FINAL_ERRORS = [BwrapMissingError, BaseCommitMissingError, DockerImageMissingError, SandboxStartError];

/** Creates a sandbox for an instance on this worker and tells the workflow where to send its commands. */
export async function createSandbox(
  deps: { store: ArtifactStore; sandboxes: SandboxPool; ownTaskQueue: string; defaults: SandboxConfig },
  request: CreateSandboxInput,
): Promise<SandboxHandle> {
  const instance = await deps.store.getJson<TaskInstance>(request.instanceRef);
  const config = { ...deps.defaults, ...request.sandbox };
  const backend = sandboxBackendFor(instance, config.backend);
  if (backend === 'local' && !instance.source) {
    throw ApplicationFailure.nonRetryable(
      `instance ${instance.instance_id} has no "source" (local git repo or tarball) for the local sandbox`,
      'InvalidInstance',
    );
  }
  try {
    await withHeartbeat({ sandboxId: request.sandboxId, backend }, () =>
      deps.sandboxes.create(backend, {
        sandboxId: request.sandboxId,
        instanceId: instance.instance_id,
        source: instance.source,
        baseCommit: instance.base_commit,
        image: backend === 'docker' ? taskImageName(instance) : undefined,
        runId: request.runId,
        workflowId: request.workflowId,
        limits: config.limits,
        docker: config.docker,
      }),
    );
  } catch (e) {
    const final = FINAL_ERRORS.find((type) => e instanceof type);
    if (final) throw ApplicationFailure.nonRetryable((e as Error).message, final.name);
    throw e;
  }
  return { sandboxId: request.sandboxId, backend, taskQueue: deps.ownTaskQueue };
}

export async function destroySandbox(deps: { sandboxes: SandboxPool }, sandboxId: string): Promise<void> {
  await deps.sandboxes.destroy(sandboxId);
}
