import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { afterAll, describe, expect, it } from 'vitest';
import { type DevServer, freePort, startDevServer } from '../../infra/devServer';
import type { ValidateTasksResult } from '../../workflows/validateTasks';
import { fixtureInstances, isolatedHome, writeInstances } from '../helpers/env';
import { quietRuntime, sandboxDirs, startWorkerProcess } from '../helpers/temporal';

/**
 * Issue: with server, worker and client as separate processes, a Temporal server that was down while a
 * grading finished made the worker drop its report of the result; the server, back, timed the attempt
 * out and the grading ran again. Here the server is killed while every grading runs its tests and stays
 * down past the heartbeat timeout; the tests finish while it is down; it comes back on the same database
 * and port; and each grading's tests must have run exactly once when the run completes.
 *
 * Test runs are counted by the test command itself: it leaves a marker in its sandbox's repository (a
 * retried grading gets a fresh sandbox) and then waits at a gate that this test opens, so no test run
 * can start and vanish unseen, and the test decides when the tests finish instead of racing them.
 */

const home = isolatedHome('outage');
const PREFIX = 'outage-test';
/** ≥ 10 s, so that the worker's failing heartbeat reports do not cancel a grading during the outage. */
const HEARTBEAT_TIMEOUT_SEC = 20;
/** How long the worker retries reporting a finished activity before it drops the report (sdk-core). */
const COMPLETION_RETRY_SEC = 10;
const STARTED = '.outage-test-started';
const GATE = '.outage-test-go';
const FINISHED = '.outage-test-finished';

const workers: ChildProcess[] = [];
const servers: DevServer[] = [];
const connections: Connection[] = [];

afterAll(async () => {
  for (const w of workers) w.kill('SIGKILL');
  for (const c of connections) await c.close().catch(() => undefined);
  for (const s of servers) await s.stop();
});

const repoFile = (sandboxId: string, name: string) => path.join(home, 'sandboxes', sandboxId, 'repo', name);

/** Sandboxes whose test command has started, seen so far (a sandbox is removed after its grading). */
const testRuns = new Set<string>();
function collectTestRuns(): void {
  for (const id of sandboxDirs(home)) if (fs.existsSync(repoFile(id, STARTED))) testRuns.add(id);
}

async function until(what: string, condition: () => boolean, limitSec = 600): Promise<void> {
  const deadline = Date.now() + limitSec * 1000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Finished gradings recorded in the artifact store (activities/recordedWork.ts). */
function recordedResults(): number {
  const dir = path.join(home, 'artifacts', 'records');
  if (!fs.existsSync(dir)) return 0;
  return fs
    .readdirSync(dir, { recursive: true })
    .map(String)
    .filter((f) => f.endsWith('.json')).length;
}

function sleepUntil(time: number): Promise<void> {
  return new Promise((r) => setTimeout(r, Math.max(0, time - Date.now())));
}

/** The pid of the dev server we started on this test's own database file. */
function serverPid(dbFile: string): number {
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const args = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (args.includes('start-dev') && args.includes(dbFile)) return Number(entry);
    } catch {
      // the process ended meanwhile
    }
  }
  throw new Error(`no temporal server running on ${dbFile}`);
}

async function connect(address: string): Promise<Client> {
  const connection = await Connection.connect({ address });
  connections.push(connection);
  return new Client({ connection });
}

describe('a Temporal server outage', () => {
  it('does not run a grading that finished while the server was down again', async () => {
    quietRuntime();
    const port = await freePort();
    const dbFile = path.join(home, 'temporal.db');
    const first = await startDevServer({ port, headless: true, dbFile });
    servers.push(first);
    const rows: Record<string, unknown>[] = fixtureInstances()
      .slice(0, 2)
      .map((r) => ({
        ...r,
        test_command: `touch ${STARTED}; while [ ! -e ${GATE} ]; do sleep 0.2; done; ${r.test_command}; s=$?; touch ${FINISHED}; exit $s`,
      }));
    const gradings = rows.length * 2;
    const file = writeInstances(home, rows);
    await startWorkerProcess(first.address, { queuePrefix: PREFIX, home, started: workers });
    const client = await connect(first.address);
    const started = await client.workflow.start('validateTasksWorkflow', {
      taskQueue: `${PREFIX}-cpu`,
      workflowId: 'validate/outage',
      args: [
        {
          runId: 'outage',
          instances: file,
          grading: { concurrency: gradings },
          sandbox: { heartbeatTimeoutSec: HEARTBEAT_TIMEOUT_SEC },
        },
      ],
    });

    // A run that ends before its tests start (gradings that fail) must fail this test, not hang it.
    let endedEarly: unknown;
    started.result().then(
      (r) => (endedEarly = r),
      () => undefined, // the server going down ends this wait
    );
    // Every grading is running its tests (held at the gate): take the server down.
    await until('every grading to start its tests', () => {
      if (endedEarly) throw new Error(`the run ended before its tests ran: ${JSON.stringify(endedEarly)}`);
      collectTestRuns();
      return testRuns.size === gradings;
    });
    const pid = serverPid(dbFile);
    process.kill(pid, 'SIGKILL');
    const downAt = Date.now();
    await until('the server to die', () => !fs.existsSync(`/proc/${pid}`), 60);

    // Keep the tests running past the heartbeat timeout (and the worker's own check of it, 5 s later):
    // the server will time every attempt out when it is back. Then let the tests finish while it is down,
    // and stay down past the worker's retries of its reports (lower bounds: a slow machine only makes
    // the outage longer).
    await sleepUntil(downAt + (HEARTBEAT_TIMEOUT_SEC + 8) * 1000);
    const inFlight = [...testRuns];
    for (const id of inFlight) fs.writeFileSync(repoFile(id, GATE), '');
    // Generous: a test run takes seconds; not finishing means the outage killed it.
    await until(
      'the tests to finish (a grading the outage cancelled never does)',
      () => inFlight.every((id) => fs.existsSync(repoFile(id, FINISHED))),
      300,
    );
    // Each grading records its result just before it reports it; the report is then retried and dropped.
    await until('every grading to record its result', () => recordedResults() === gradings, 300);
    // Three times the worker's nominal retry time: on a busy machine its retries take longer, and a report
    // still being retried when the server is back is accepted (no second attempt to look at).
    await sleepUntil(Date.now() + COMPLETION_RETRY_SEC * 3 * 1000 + 15_000);

    // Same port, same database: the run goes on where the server left it.
    const second = await startDevServer({ port, headless: true, dbFile });
    servers.push(second);
    const after = await connect(second.address);
    const handle = after.workflow.getHandle('validate/outage');
    // A grading run again would wait at its gate: open every gate, and count.
    const opener = setInterval(() => {
      collectTestRuns();
      for (const id of testRuns) {
        try {
          fs.writeFileSync(repoFile(id, GATE), '');
        } catch {
          // that sandbox is gone
        }
      }
    }, 200);
    let result: ValidateTasksResult;
    try {
      result = (await handle.result()) as ValidateTasksResult;
    } finally {
      clearInterval(opener);
    }
    collectTestRuns();

    expect(result.valid.sort()).toEqual(rows.map((r) => r.instance_id as string).sort());
    expect(result.errors).toEqual([]);
    // The outage did cost each grading its first attempt (the server timed it out)…
    const history = await handle.fetchHistory();
    const children = (history.events ?? [])
      .map((e) => e.childWorkflowExecutionStartedEventAttributes?.workflowExecution?.workflowId)
      .filter((id): id is string => Boolean(id));
    expect(children).toHaveLength(gradings);
    for (const id of children) {
      const events = (await after.workflow.getHandle(id).fetchHistory()).events ?? [];
      const attempts = events.filter(
        (e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'gradeInSandbox',
      );
      expect(attempts.length, id).toBeGreaterThanOrEqual(2);
    }
    // …but no grading's tests ran twice.
    expect(testRuns.size).toBe(gradings);
  });
});
