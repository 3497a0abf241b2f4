import { ActivityFailure, ApplicationFailure, proxyActivities } from '@temporalio/workflow';
import type { GpuPlacementActivities } from '../../activities';
import type { GpuDevice, ModelServerActivities } from '../../activities/modelServer';

/** Test workflows for the gpu worker: what a pipeline does to place work on a device. */

export async function claimDevicesWorkflow(sharedGpuQueue: string, times: number): Promise<GpuDevice[]> {
  const { claimGpuDevice } = proxyActivities<GpuPlacementActivities>({
    taskQueue: sharedGpuQueue,
    startToCloseTimeout: '1 minute',
  });
  const claims: GpuDevice[] = [];
  for (let i = 0; i < times; i++) claims.push(await claimGpuDevice());
  return claims;
}

/** Starts a server on the claimed device's queue that never becomes healthy; returns the failure it reports. */
export async function unhealthyServerOnDeviceWorkflow(
  device: GpuDevice,
  command: string[],
): Promise<{ type: string | undefined; nonRetryable: boolean; message: string }> {
  const { ensureModelServer } = proxyActivities<ModelServerActivities>({
    taskQueue: device.queue,
    startToCloseTimeout: '10 minutes',
    heartbeatTimeout: '1 minute',
    retry: { maximumAttempts: 1 },
  });
  try {
    await ensureModelServer({
      key: 'never-healthy',
      spec: { kind: 'command', command, baseUrl: 'http://127.0.0.1:9/v1', model: 'm', startupTimeoutSec: 1 },
    });
  } catch (err) {
    if (err instanceof ActivityFailure && err.cause instanceof ApplicationFailure)
      return {
        type: err.cause.type ?? undefined,
        nonRetryable: err.cause.nonRetryable ?? false,
        message: err.cause.message,
      };
    throw err;
  }
  throw ApplicationFailure.nonRetryable('the server was reported healthy');
}
