import {
  Client,
  Connection,
  WorkflowExecutionAlreadyStartedError,
  type WorkflowHandle,
  WorkflowIdConflictPolicy,
  WorkflowIdReusePolicy,
} from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { DEFAULT_QUEUE_PREFIX, roleQueue, type WorkerRole } from '../domain/taskQueues';
import { type DevServer, startDevServer } from '../infra/devServer';
import { createWorkerGroup, type WorkerGroup } from '../workers/worker';

/**
 * Where the CLI finds Temporal. `TEMPORAL_ADDRESS` set: that server. Unset: the embedded dev server
 * (started, or reused when already running), and — for commands that run work — in-process workers.
 */
export interface TemporalSettings {
  address: string | undefined;
  namespace: string;
  queuePrefix: string;
  port: number;
}

export function temporalSettings(env: NodeJS.ProcessEnv = process.env): TemporalSettings {
  const port = Number(env.ENTROPO_TEMPORAL_PORT ?? 7233);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) {
    throw new Error(
      `ENTROPO_TEMPORAL_PORT must be a TCP port, got ${JSON.stringify(env.ENTROPO_TEMPORAL_PORT)}`,
    );
  }
  return {
    address: env.TEMPORAL_ADDRESS || undefined,
    namespace: env.TEMPORAL_NAMESPACE || 'default',
    queuePrefix: env.ENTROPO_TASK_QUEUE_PREFIX || DEFAULT_QUEUE_PREFIX,
    port,
  };
}

export interface Session {
  client: Client;
  address: string;
  settings: TemporalSettings;
  workflowQueue: string;
  embedded: boolean;
  /** The Temporal UI (the embedded server's, or ENTROPO_UI_URL for a cluster); null when unknown. */
  uiUrl: string | null;
}

export async function withSession<T>(
  options: { workerRoles?: readonly WorkerRole[]; log: (line: string) => void },
  fn: (session: Session) => Promise<T>,
): Promise<T> {
  const settings = temporalSettings();
  let server: DevServer | undefined;
  let address = settings.address;
  if (!address) {
    server = await startDevServer({ port: settings.port, namespace: settings.namespace });
    address = server.address;
    options.log(
      `${server.owned ? 'started' : 'reusing'} embedded Temporal at ${address}` +
        (server.uiUrl ? ` · UI ${server.uiUrl}` : ''),
    );
  }
  const connection = await Connection.connect({ address });
  let workers: WorkerGroup | undefined;
  let workersDone: Promise<void> | undefined;
  let nativeConnection: NativeConnection | undefined;
  try {
    if (options.workerRoles && options.workerRoles.length > 0) {
      nativeConnection = await NativeConnection.connect({ address });
      workers = await createWorkerGroup({
        connection: nativeConnection,
        roles: options.workerRoles,
        namespace: settings.namespace,
        queuePrefix: settings.queuePrefix,
        address,
        log: options.log,
      });
      workersDone = workers.run();
    }
    const client = new Client({ connection, namespace: settings.namespace });
    return await fn({
      client,
      address,
      settings,
      workflowQueue: roleQueue(settings.queuePrefix, 'cpu'),
      embedded: server !== undefined,
      uiUrl: server?.uiUrl ?? process.env.ENTROPO_UI_URL ?? null,
    });
  } finally {
    workers?.shutdown();
    await workersDone?.catch(() => undefined);
    await nativeConnection?.close();
    await connection.close();
    await server?.stop();
  }
}

/**
 * Starts a run's workflow, or attaches to it when a run with that id is open (same run id = same run);
 * a finished run's result is shown instead of starting it again.
 */
export async function startOrAttach(
  session: Session,
  run: { type: string; workflowId: string; config: unknown; runId: string; again: string },
  log: (line: string) => void,
): Promise<WorkflowHandle> {
  try {
    return await session.client.workflow.start(run.type, {
      taskQueue: session.workflowQueue,
      workflowId: run.workflowId,
      args: [run.config],
      workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
      workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
    });
  } catch (e) {
    if (!(e instanceof WorkflowExecutionAlreadyStartedError)) throw e;
    log(`run ${run.runId} already finished; showing its result (use another --run-id to ${run.again})`);
    return session.client.workflow.getHandle(run.workflowId);
  }
}

/** Waits for a run's result, showing its `progress` query as one line (redrawn on a terminal) every second. */
export async function resultWithProgress<P, R>(
  handle: WorkflowHandle,
  format: (progress: P) => string,
): Promise<R> {
  const tty = process.stderr.isTTY;
  let last = '';
  const poll = setInterval(async () => {
    try {
      const line = format(await handle.query<P>('progress'));
      if (line !== last) process.stderr.write(tty ? `\r${line}` : `${line}\n`);
      last = line;
    } catch {
      // not started yet, or between continue-as-new runs
    }
  }, 1000);
  try {
    return (await handle.result()) as R;
  } finally {
    clearInterval(poll);
    if (tty && last) process.stderr.write('\n');
  }
}
