import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { temporal as proto } from '@temporalio/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArtifactStore } from '../../activities/artifacts';
import { sandboxConfigSchema } from '../../domain/runConfig';
import type { GradeInstanceInput } from '../../workflows/gradeInstance';
import { fixtureInstances, isolatedHome } from '../helpers/env';
import { startTestTemporal, startWorkerProcess, type TestTemporal } from '../helpers/temporal';

/**
 * A grading whose activity misses its heartbeats while its worker stays alive (here: the worker process is
 * frozen with SIGSTOP until the server times the activity out, then thawed) restarts in a fresh sandbox. The
 * sandbox it abandoned must go while that worker lives, not when it stops.
 */

const { PendingActivityState } = proto.api.enums.v1;
const home = isolatedHome('abandoned');
const PREFIX = 'abandoned-test';
let temporal: TestTemporal;
const workers: ChildProcess[] = [];

beforeAll(async () => {
  temporal = await startTestTemporal(home);
});
afterAll(async () => {
  for (const w of workers) {
    w.kill('SIGCONT');
    w.kill('SIGKILL');
  }
  await temporal?.close();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sandboxDir = (id: string) => path.join(home, 'sandboxes', id);

describe('a grading that restarts while its worker lives', () => {
  it('destroys the sandbox it abandoned while the worker is still running', async () => {
    const worker = await startWorkerProcess(temporal.address, {
      queuePrefix: PREFIX,
      home,
      started: workers,
    });
    // Tests that hang by themselves: the grading is still running whenever the worker is frozen.
    const instance = { ...fixtureInstances()[0]!, test_command: 'sleep 1000' };
    const instanceRef = (await new ArtifactStore().putJson(instance)).id;
    const workflowId = 'grade-abandoned';
    const input: GradeInstanceInput = {
      runId: 'abandoned',
      instanceId: String(fixtureInstances()[0]!.instance_id),
      instanceRef,
      patch: { kind: 'empty' },
      sandbox: sandboxConfigSchema.parse({ heartbeatTimeoutSec: 8, maxSandboxRestarts: 3 }),
      testTimeoutSec: 2000,
    };
    const handle = await temporal.client.workflow.start('gradeInstanceWorkflow', {
      taskQueue: `${PREFIX}-cpu`,
      workflowId,
      args: [input],
    });
    const first = `${workflowId}-0`;
    const second = `${workflowId}-1`;

    // Wait until the worker runs the grading in the first sandbox, then freeze it past its heartbeat timeout.
    const gradingStarted = async () =>
      ((await handle.describe()).raw.pendingActivities ?? []).some(
        (a) =>
          a.activityType?.name === 'gradeInSandbox' &&
          a.state === PendingActivityState.PENDING_ACTIVITY_STATE_STARTED,
      );
    while (!(await gradingStarted())) await sleep(100);
    expect(fs.existsSync(sandboxDir(first))).toBe(true);
    worker.kill('SIGSTOP');
    const timedOut = async () =>
      ((await handle.fetchHistory()).events ?? []).some((e) => e.activityTaskTimedOutEventAttributes);
    while (!(await timedOut())) await sleep(500);
    worker.kill('SIGCONT');

    // The grading restarts in a second sandbox on the same (alive) worker ...
    while (!fs.existsSync(sandboxDir(second))) await sleep(200);
    // ... and the first one goes, while the worker is still running.
    for (let i = 0; i < 600 && fs.existsSync(sandboxDir(first)); i++) await sleep(200);
    expect(worker.exitCode).toBeNull();
    expect(fs.existsSync(sandboxDir(first))).toBe(false);
    expect(fs.existsSync(sandboxDir(second))).toBe(true);

    await handle.terminate('test over');
  });
});
