import { Context } from '@temporalio/activity';
import type { SandboxConfig } from '../domain/runConfig';
import type { ArtifactStore } from './artifacts';
import { runEngineJob } from './engine';
import { type GradeRequest, gradeInSandbox } from './grading';
import { gradingWorkKey, recorded } from './recordedWork';
import { type CreateSandboxInput, createSandbox, destroySandbox } from './sandbox';
import type { SandboxPool } from './sandboxPool';
import { loadInstances, writeValidationReport } from './tasks';

/** Activities of the cpu role: data loading and reports. */
export function createCpuActivities(store: ArtifactStore) {
  return {
    loadInstances: (file: string) => loadInstances({ store }, file),
    writeValidationReport: (runId: string, verdicts: Parameters<typeof writeValidationReport>[2]) =>
      writeValidationReport({ store }, runId, verdicts),
  };
}

/** Activities of the sandbox role. `createSandbox` runs on the shared queue; the rest on `ownTaskQueue`. */
export function createSandboxActivities(
  store: ArtifactStore,
  sandboxes: SandboxPool,
  ownTaskQueue: string,
  defaults: SandboxConfig,
) {
  return {
    createSandbox: (request: CreateSandboxInput) =>
      createSandbox({ store, sandboxes, ownTaskQueue, defaults }, request),
    // A grading whose result was recorded by an earlier attempt (one the server timed out while it was
    // down) is not run again.
    gradeInSandbox: async (request: GradeRequest) => {
      const { info, log, cancellationSignal } = Context.current();
      // Started outside a workflow (a standalone activity), its own id is all the identity there is.
      const workflowId = info.workflowExecution?.workflowId ?? `activity:${info.activityId}`;
      const key = gradingWorkKey(request, {
        namespace: info.namespace,
        workflowId,
        backend: sandboxes.get(request.sandboxId).backend,
      });
      return recorded(store, key, () => gradeInSandbox({ store, sandboxes }, request), {
        signal: cancellationSignal,
        onReuse: () => log.info(`grading ${workflowId}: returning the result an earlier attempt recorded`),
      });
    },
    destroySandbox: (sandboxId: string) => destroySandbox({ sandboxes }, sandboxId),
  };
}

/** Activities of the gpu role: engine jobs (training, scoring) as child processes. */
export function createGpuActivities() {
  return { runEngineJob };
}

export type CpuActivities = ReturnType<typeof createCpuActivities>;
export type SandboxActivities = ReturnType<typeof createSandboxActivities>;
export type GpuActivities = ReturnType<typeof createGpuActivities>;
