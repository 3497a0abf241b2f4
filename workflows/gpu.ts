import { TimeoutType } from '@temporalio/common';
import { ActivityFailure, proxyActivities, TimeoutFailure } from '@temporalio/workflow';
import type { EngineJobRequest, EngineJobResult } from '../activities/engine';
import type { GpuDevice, ModelServerActivities } from '../activities/modelServer';
import { roleQueue } from '../domain/taskQueues';

/**
 * Work pinned to one accelerator. A gpu worker serves one queue per device (one slot each); the workflow
 * asks the shared gpu queue for a device, then sends the job to that device's queue. A job nobody picks up
 * within `placementTimeout` (its device's worker is gone) is placed again on another device; a retried
 * training job resumes from its newest checkpoint wherever it lands.
 */

const PLACEMENT_TIMEOUT = '5 minutes';

function sharedGpu(prefix: string) {
  return proxyActivities<{ claimGpuDevice(): Promise<GpuDevice> }>({
    taskQueue: roleQueue(prefix, 'gpu'),
    startToCloseTimeout: '1 minute',
    // No attempt limit: a run waits for a gpu worker to come (back), as it would for any worker.
  });
}

function onDevice(queue: string) {
  return proxyActivities<{ runEngineJob(request: EngineJobRequest): Promise<EngineJobResult> }>({
    taskQueue: queue,
    scheduleToStartTimeout: PLACEMENT_TIMEOUT,
    startToCloseTimeout: '7 days',
    // The job heartbeats every 2 s; silence means its worker (or machine) died.
    heartbeatTimeout: '30 seconds',
    retry: {
      maximumAttempts: 5,
      nonRetryableErrorTypes: ['EngineInvalidInput', 'EngineNumericalFailure'],
    },
  });
}

function placementLost(err: unknown): boolean {
  return (
    err instanceof ActivityFailure &&
    err.cause instanceof TimeoutFailure &&
    err.cause.timeoutType === TimeoutType.SCHEDULE_TO_START
  );
}

/** Runs an engine job on some device, placing it again when its device's worker is gone. */
export async function runOnGpu(prefix: string, request: EngineJobRequest): Promise<EngineJobResult> {
  for (;;) {
    const device = await sharedGpu(prefix).claimGpuDevice();
    try {
      return await onDevice(device.queue).runEngineJob(request);
    } catch (err) {
      if (!placementLost(err)) throw err;
    }
  }
}

/** The model server activities, on the device that holds the server. */
export function serverActivities(queue: string) {
  return proxyActivities<ModelServerActivities>({
    taskQueue: queue,
    scheduleToStartTimeout: PLACEMENT_TIMEOUT,
    startToCloseTimeout: '30 minutes',
    heartbeatTimeout: '1 minute',
    retry: { maximumAttempts: 3, nonRetryableErrorTypes: ['ModelServerUnhealthy'] },
  });
}

/** A device for a model server (the server stays on it until stopped). */
export function claimDevice(prefix: string): Promise<GpuDevice> {
  return sharedGpu(prefix).claimGpuDevice();
}
