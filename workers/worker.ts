import * as os from 'node:os';
import * as path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import type { Duration } from '@temporalio/common';
import { type NativeConnection, Worker } from '@temporalio/worker';
import {
  createCpuActivities,
  createGpuActivities,
  createGpuPlacementActivities,
  createSandboxActivities,
  type GpuDevice,
} from '../activities';
import { ArtifactStore } from '../activities/artifacts';
import { createEvaluationActivities } from '../activities/evaluation';
import { assertBwrapAvailable, LocalSandboxBackend } from '../activities/localSandbox';
import { ModelServers } from '../activities/modelServer';
import { createPipelineActivities } from '../activities/pipeline';
import { createReportActivities } from '../activities/report';
import {
  createLlmActivities,
  createRolloutCpuActivities,
  createRolloutSandboxActivities,
} from '../activities/rolloutActivities';
import { createRolloutPoolActivities } from '../activities/rolloutPool';
import { SandboxPool } from '../activities/sandboxPool';
import { parseGpuList } from '../domain/gpuDevices';
import { type SandboxConfig, sandboxConfigSchema } from '../domain/runConfig';
import { deploymentKey } from '../domain/sandboxOrphans';
import { gpuDeviceQueue, roleQueue, sandboxWorkerQueue, type WorkerRole } from '../domain/taskQueues';

/**
 * Workers by role, each on its own task queue:
 *   cpu     – workflows, data loading, reports            (`<prefix>-cpu`)
 *   sandbox – sandbox creation on `<prefix>-sandbox`, and every command of a sandbox it holds on its own
 *             queue `<prefix>-sandbox@<host>-<pid>`, so commands always reach the worker holding the sandbox
 *   gpu     – one queue per device `<prefix>-gpu@<host>/<device>` (one slot): engine jobs (training,
 *             scoring) as child processes that see only that device, and the model servers on it; the shared
 *             `<prefix>-gpu` queue answers `claimGpuDevice` with one of those queues
 */

export interface WorkerGroupOptions {
  connection: NativeConnection;
  roles: readonly WorkerRole[];
  namespace?: string;
  queuePrefix: string;
  /** Sandboxes this worker runs at once. */
  maxSandboxes?: number;
  /** Policy calls (llm role) in flight at once. */
  maxLlmCalls?: number;
  /** Devices of the gpu role (`parseGpuList`); default: CUDA_VISIBLE_DEVICES, else one `cpu` device. */
  gpus?: string[];
  /** In-flight activities get this long to finish on shutdown before they are cancelled. */
  shutdownGraceTime?: Duration;
  /**
   * The Temporal frontend address. With it, the sandbox sweeper also removes sandboxes whose workflow has
   * closed (not only those of dead workers on this host).
   */
  address?: string;
  /** How often the sandbox role sweeps for leaked sandboxes after the sweep at start-up. */
  sweepIntervalSec?: number;
  /** Sandbox settings used when a request carries none (limits, docker). */
  sandboxDefaults?: SandboxConfig;
  /**
   * A configured deployment name (default: ENTROPO_DEPLOYMENT). Without one the deployment is the Temporal
   * cluster's id with the namespace and queue prefix; sandboxes are labelled with it, and the sweeper judges
   * only its own deployment's sandboxes by their workflow.
   */
  deploymentName?: string;
  log?: (line: string) => void;
}

export interface WorkerGroup {
  identity: string;
  /** The deployment this worker's sandboxes are labelled with (`deploymentKey`); unknown if the server would not say. */
  deployment: string | undefined;
  /** Runs until shutdown (SIGINT/SIGTERM, or `shutdown()`), then destroys the sandboxes it held. */
  run(): Promise<void>;
  shutdown(): void;
}

export async function createWorkerGroup(options: WorkerGroupOptions): Promise<WorkerGroup> {
  const namespace = options.namespace ?? 'default';
  const identity = `${os.hostname()}-${process.pid}`;
  const log = options.log ?? (() => {});
  const store = new ArtifactStore();
  const common = {
    connection: options.connection,
    namespace,
    identity,
    shutdownGraceTime: options.shutdownGraceTime ?? '30 seconds',
    // While the server is unreachable each heartbeat report fails after ~10 s of retries, and the SDK
    // cancels an activity whose reports have not completed for its heartbeat timeout + 5 s. Reporting at
    // least every 5 s keeps that gap (≤ 15 s) below any heartbeat timeout of 10 s or more, so a server
    // outage alone does not kill a running grading (sandbox.heartbeatTimeoutSec, default 30 s).
    maxHeartbeatThrottleInterval: 5_000,
  };
  const deployment = await deploymentOf(
    options.connection,
    namespace,
    options.queuePrefix,
    options.deploymentName ?? process.env.ENTROPO_DEPLOYMENT,
  ).catch((e: unknown) => {
    // Without it the sweeper removes only sandboxes of dead workers on this host, never by workflow.
    log(
      `cannot tell this worker's deployment (the server did not report its cluster id: ${(e as Error).message}); ` +
        "set ENTROPO_DEPLOYMENT so closed workflows' sandboxes are swept",
    );
    return undefined;
  });
  const workers: Worker[] = [];
  let sandboxes: SandboxPool | undefined;
  let sweeper: NodeJS.Timeout | undefined;
  let clientConnection: Connection | undefined;
  let modelServers: ModelServers | undefined;

  for (const role of options.roles) {
    switch (role) {
      case 'cpu':
        workers.push(
          await Worker.create({
            ...common,
            taskQueue: roleQueue(options.queuePrefix, 'cpu'),
            workflowsPath: path.join(__dirname, '..', 'workflows', 'index.ts'),
            activities: {
              ...createCpuActivities(store),
              ...createRolloutCpuActivities(store),
              ...createRolloutPoolActivities(store),
              ...createPipelineActivities(store),
              ...createEvaluationActivities(store),
              ...createReportActivities(store),
            },
          }),
        );
        break;
      case 'sandbox': {
        assertBwrapAvailable();
        const pool = new SandboxPool(new LocalSandboxBackend(undefined, log), log, deployment);
        sandboxes = pool;
        let isWorkflowOpen: ((workflowId: string) => Promise<boolean>) | undefined;
        if (options.address) {
          clientConnection = await Connection.connect({ address: options.address });
          isWorkflowOpen = workflowOpenCheck(new Client({ connection: clientConnection, namespace }));
        }
        const sweep = async () => {
          const swept = await pool.sweepOrphans(isWorkflowOpen);
          if (swept.length > 0) log(`removed ${swept.length} leaked sandbox(es): ${swept.join(', ')}`);
        };
        await sweep();
        sweeper = setInterval(
          () => void sweep().catch((e) => log(`sandbox sweep failed: ${(e as Error).message}`)),
          (options.sweepIntervalSec ?? 300) * 1000,
        );
        sweeper.unref();
        const ownQueue = sandboxWorkerQueue(options.queuePrefix, identity);
        const activities = createSandboxActivities(
          store,
          pool,
          ownQueue,
          options.sandboxDefaults ?? sandboxConfigSchema.parse({}),
        );
        const maxSandboxes = options.maxSandboxes ?? Math.max(2, os.availableParallelism());
        workers.push(
          await Worker.create({
            ...common,
            taskQueue: roleQueue(options.queuePrefix, 'sandbox'),
            activities: { createSandbox: activities.createSandbox },
            maxConcurrentActivityTaskExecutions: maxSandboxes,
          }),
          await Worker.create({
            ...common,
            taskQueue: ownQueue,
            activities: {
              gradeInSandbox: activities.gradeInSandbox,
              checkRegressions: activities.checkRegressions,
              ...createRolloutSandboxActivities(store, pool),
              destroySandbox: activities.destroySandbox,
            },
            maxConcurrentActivityTaskExecutions: maxSandboxes * 2,
          }),
        );
        break;
      }
      case 'llm':
        // Policy calls wait on a model server, not on this machine: many may be in flight at once.
        workers.push(
          await Worker.create({
            ...common,
            taskQueue: roleQueue(options.queuePrefix, 'llm'),
            activities: createLlmActivities(store),
            maxConcurrentActivityTaskExecutions: options.maxLlmCalls ?? 256,
          }),
        );
        break;
      case 'gpu': {
        const host = os.hostname();
        const devices: GpuDevice[] = (options.gpus ?? parseGpuList(undefined, process.env)).map((device) => ({
          device,
          host,
          queue: gpuDeviceQueue(options.queuePrefix, host, device),
        }));
        const servers = new ModelServers({ log });
        modelServers = servers;
        const busyDevices = new Set<string>();
        for (const { device, queue } of devices) {
          // One activity at a time per device: a training job or a server start owns the accelerator (or,
          // on CPU, every core). A running server does not hold the slot.
          workers.push(
            await Worker.create({
              ...common,
              taskQueue: queue,
              activities: createGpuActivities({ device, servers, busyDevices }),
              maxConcurrentActivityTaskExecutions: 1,
            }),
          );
        }
        const placement = createGpuPlacementActivities(
          devices,
          (device) => (busyDevices.has(device) ? 1 : 0) + servers.liveCount(device),
        );
        workers.push(
          await Worker.create({
            ...common,
            taskQueue: roleQueue(options.queuePrefix, 'gpu'),
            activities: placement,
          }),
        );
        break;
      }
    }
  }
  log(
    `worker ${identity} of deployment ${deployment ?? '(unknown)'} serving ${workers.map((w) => w.options.taskQueue).join(', ')}`,
  );

  return {
    identity,
    deployment,
    async run() {
      try {
        await Promise.all(workers.map((w) => w.run()));
      } finally {
        clearInterval(sweeper);
        await sandboxes?.destroyAll();
        await modelServers?.stopAll();
        await clientConnection?.close();
      }
    },
    shutdown() {
      for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
    },
  };
}

/**
 * The deployment a worker belongs to: the configured name, or the cluster id its Temporal reports with the
 * namespace and queue prefix — the same whichever address spelling reached the server.
 */
export async function deploymentOf(
  connection: Pick<NativeConnection | Connection, 'workflowService'>,
  namespace: string,
  queuePrefix: string,
  configuredName?: string,
): Promise<string> {
  if (configuredName?.trim()) return deploymentKey({ configuredName, clusterId: '', namespace, queuePrefix });
  const info = await connection.workflowService.getClusterInfo({});
  return deploymentKey({ clusterId: info.clusterId ?? '', namespace, queuePrefix });
}

/**
 * Whether a workflow is still running, for the sweeper. It asks only about sandboxes of its own deployment,
 * so a workflow Temporal does not know (deleted, retention passed) is closed; when Temporal cannot be asked,
 * the sandbox is kept.
 */
export function workflowOpenCheck(client: Client): (workflowId: string) => Promise<boolean> {
  return async (workflowId) => {
    try {
      const description = await client.workflow.getHandle(workflowId).describe();
      return description.status.name === 'RUNNING';
    } catch (e) {
      return (e as Error).name !== 'WorkflowNotFoundError';
    }
  };
}
