import * as os from 'node:os';
import * as path from 'node:path';
import type { Duration } from '@temporalio/common';
import { type NativeConnection, Worker } from '@temporalio/worker';
import { createCpuActivities, createGpuActivities, createSandboxActivities } from '../activities';
import { ArtifactStore } from '../activities/artifacts';
import { assertBwrapAvailable, LocalSandboxBackend } from '../activities/localSandbox';
import { roleQueue, sandboxWorkerQueue, type WorkerRole } from '../domain/taskQueues';

/**
 * Workers by role, each on its own task queue:
 *   cpu     – workflows, data loading, reports            (`<prefix>-cpu`)
 *   sandbox – sandbox creation on `<prefix>-sandbox`, and every command of a sandbox it holds on its own
 *             queue `<prefix>-sandbox@<host>-<pid>`, so commands always reach the worker holding the sandbox
 *   gpu     – engine jobs (training, scoring) run as child processes       (`<prefix>-gpu`)
 */

export interface WorkerGroupOptions {
  connection: NativeConnection;
  roles: readonly WorkerRole[];
  namespace?: string;
  queuePrefix: string;
  /** Sandboxes this worker runs at once. */
  maxSandboxes?: number;
  /** In-flight activities get this long to finish on shutdown before they are cancelled. */
  shutdownGraceTime?: Duration;
  log?: (line: string) => void;
}

export interface WorkerGroup {
  identity: string;
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
  };
  const workers: Worker[] = [];
  let sandboxes: LocalSandboxBackend | undefined;

  for (const role of options.roles) {
    switch (role) {
      case 'cpu':
        workers.push(
          await Worker.create({
            ...common,
            taskQueue: roleQueue(options.queuePrefix, 'cpu'),
            workflowsPath: path.join(__dirname, '..', 'workflows', 'index.ts'),
            activities: createCpuActivities(store),
          }),
        );
        break;
      case 'sandbox': {
        assertBwrapAvailable();
        sandboxes = new LocalSandboxBackend();
        const swept = await sandboxes.sweepOrphans();
        if (swept.length > 0) log(`removed ${swept.length} sandbox(es) left by workers that are gone`);
        const ownQueue = sandboxWorkerQueue(options.queuePrefix, identity);
        const activities = createSandboxActivities(store, sandboxes, ownQueue);
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
              destroySandbox: activities.destroySandbox,
            },
            maxConcurrentActivityTaskExecutions: maxSandboxes * 2,
          }),
        );
        break;
      }
      case 'gpu':
        // One engine job at a time: a job owns the accelerator (or, on CPU, every core).
        workers.push(
          await Worker.create({
            ...common,
            taskQueue: roleQueue(options.queuePrefix, 'gpu'),
            activities: createGpuActivities(),
            maxConcurrentActivityTaskExecutions: 1,
          }),
        );
        break;
    }
  }
  log(`worker ${identity} serving ${workers.map((w) => w.options.taskQueue).join(', ')}`);

  return {
    identity,
    async run() {
      try {
        await Promise.all(workers.map((w) => w.run()));
      } finally {
        await sandboxes?.destroyAll();
      }
    },
    shutdown() {
      for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
    },
  };
}
