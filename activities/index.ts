import { Context } from '@temporalio/activity';
import { CPU_DEVICE, deviceEnv } from '../domain/gpuDevices';
import type { SandboxConfig } from '../domain/runConfig';
import type { ArtifactStore } from './artifacts';
import { type EngineJobRequest, type EngineJobResult, runEngineJob } from './engine';
import { type GradeRequest, gradeInSandbox } from './grading';
import { createModelServerActivities, type GpuDevice, ModelServers } from './modelServer';
import { gradingWorkKey, recorded, type WorkKey } from './recordedWork';
import { checkRegressions, type RegressionCheckRequest, regressionCheckWorkKey } from './regressionCheck';
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
    gradeInSandbox: (request: GradeRequest) =>
      recordedInActivity(
        store,
        'grading',
        (context) =>
          gradingWorkKey(request, { ...context, backend: sandboxes.get(request.sandboxId).backend }),
        () => gradeInSandbox({ store, sandboxes }, request),
      ),
    // Likewise a regression check.
    checkRegressions: (request: RegressionCheckRequest) =>
      recordedInActivity(
        store,
        'regression check',
        (context) =>
          regressionCheckWorkKey(request, { ...context, backend: sandboxes.get(request.sandboxId).backend }),
        () => checkRegressions({ store, sandboxes }, request),
      ),
    destroySandbox: (sandboxId: string) => destroySandbox({ sandboxes }, sandboxId),
  };
}

/** Runs an activity's work once per identity (`recorded`), the identity made from its workflow's. */
async function recordedInActivity<T>(
  store: ArtifactStore,
  what: string,
  keyOf: (context: { namespace: string; workflowId: string }) => WorkKey,
  work: () => Promise<T>,
): Promise<T> {
  const { info, log, cancellationSignal } = Context.current();
  // Started outside a workflow (a standalone activity), its own id is all the identity there is.
  const workflowId = info.workflowExecution?.workflowId ?? `activity:${info.activityId}`;
  return recorded(store, keyOf({ namespace: info.namespace, workflowId }), work, {
    signal: cancellationSignal,
    onReuse: () => log.info(`${what} ${workflowId}: returning the result an earlier attempt recorded`),
  });
}

export type { GpuDevice } from './modelServer';

/**
 * Activities of one device queue of the gpu role (one slot): engine jobs (training, scoring) as child
 * processes that see only this device, and the model servers on it. `busyDevices` tells the placement
 * which devices are running a job.
 */
export function createGpuActivities(
  options: { device?: string; servers?: ModelServers; busyDevices?: Set<string> } = {},
) {
  const device = options.device ?? CPU_DEVICE;
  const servers = options.servers ?? new ModelServers();
  return {
    runEngineJob: async (request: EngineJobRequest): Promise<EngineJobResult> => {
      options.busyDevices?.add(device);
      try {
        return await runEngineJob(request, { env: deviceEnv(device) });
      } finally {
        options.busyDevices?.delete(device);
      }
    },
    ...createModelServerActivities(servers, device),
  };
}

/**
 * The activity of the shared gpu queue: hands out one of this worker's device queues, the least busy
 * (running a job, holding model servers) first and in turn among equals. A workflow routes a stage's
 * gpu work to the claimed queue with a schedule-to-start timeout, and claims again when it fires (the
 * device's worker is gone).
 */
export function createGpuPlacementActivities(devices: GpuDevice[], loadOf: (device: string) => number) {
  if (devices.length === 0) throw new Error('a gpu worker needs at least one device');
  let turn = 0;
  return {
    claimGpuDevice: async (): Promise<GpuDevice> => {
      let best = turn;
      for (let i = 1; i < devices.length; i++) {
        const candidate = (turn + i) % devices.length;
        if (loadOf(devices[candidate]!.device) < loadOf(devices[best]!.device)) best = candidate;
      }
      turn = (best + 1) % devices.length;
      return devices[best]!;
    },
  };
}

export type CpuActivities = ReturnType<typeof createCpuActivities>;
export type SandboxActivities = ReturnType<typeof createSandboxActivities>;
export type GpuActivities = ReturnType<typeof createGpuActivities>;
export type GpuPlacementActivities = ReturnType<typeof createGpuPlacementActivities>;
