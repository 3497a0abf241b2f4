import type { ChildProcess } from 'node:child_process';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ValidationProgress } from '../../domain/validation';
import type { ValidateTasksResult } from '../../workflows/validateTasks';
import { fixtureInstances, isolatedHome, writeInstances } from '../helpers/env';
import {
  sandboxDirs,
  startTestTemporal,
  startWorkerProcess as startWorkerProcessIn,
  type TestTemporal,
} from '../helpers/temporal';

const home = isolatedHome('resume');
const PREFIX = 'resume-test';
let temporal: TestTemporal;
const workers: ChildProcess[] = [];

const startWorkerProcess = (address: string) =>
  startWorkerProcessIn(address, { queuePrefix: PREFIX, home, started: workers });

async function gradeActivityCount(client: Client, workflowId: string): Promise<number> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  return (history.events ?? []).filter(
    (e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'gradeInSandbox',
  ).length;
}

beforeAll(async () => {
  temporal = await startTestTemporal(home);
});
afterAll(async () => {
  for (const w of workers) w.kill('SIGKILL');
  await temporal?.close();
});

describe('resume after a worker is killed', () => {
  it('completes the run without re-grading finished gradings', async () => {
    // Slow each test run down a little so that the kill lands while a grading is in flight.
    const rows = fixtureInstances().map((r) => ({ ...r, test_command: `sleep 1 && ${r.test_command}` }));
    const file = writeInstances(home, rows);
    const first = await startWorkerProcess(temporal.address);
    const handle = await temporal.client.workflow.start('validateTasksWorkflow', {
      taskQueue: `${PREFIX}-cpu`,
      workflowId: 'validate/resume',
      args: [
        {
          runId: 'resume',
          instances: file,
          grading: { concurrency: 1 },
          sandbox: { heartbeatTimeoutSec: 10 },
        },
      ],
    });

    let progress: ValidationProgress | undefined;
    // Kill once two gradings are done and the next one holds a sandbox, i.e. mid-grading.
    for (let i = 0; i < 600 && ((progress?.gradingsDone ?? 0) < 2 || sandboxDirs(home).length === 0); i++) {
      await new Promise((r) => setTimeout(r, 100));
      progress = await handle.query<ValidationProgress>('progress').catch(() => undefined);
    }
    expect(progress?.gradingsDone).toBeGreaterThanOrEqual(2);
    first.kill('SIGKILL');
    const killedAt = Date.now();
    const finishedBeforeKill: string[] = [];
    for await (const child of temporal.client.workflow.list({
      query: `WorkflowType = 'gradeInstanceWorkflow'`,
    })) {
      if (child.closeTime && child.closeTime.getTime() < killedAt) finishedBeforeKill.push(child.workflowId);
    }
    expect(sandboxDirs(home).length).toBeGreaterThan(0); // the killed worker left its sandbox behind

    await startWorkerProcess(temporal.address);
    const result = (await handle.result()) as ValidateTasksResult;
    expect(result.valid).toHaveLength(3);

    // Each (instance, patch) child was started once, and gradings finished before the kill ran once.
    const history = await handle.fetchHistory();
    const childStarts = (history.events ?? []).filter((e) => e.childWorkflowExecutionStartedEventAttributes);
    expect(childStarts).toHaveLength(6);
    expect(finishedBeforeKill.length).toBeGreaterThanOrEqual(2);
    for (const id of finishedBeforeKill) expect(await gradeActivityCount(temporal.client, id)).toBe(1);
    let total = 0;
    for (const e of childStarts) {
      total += await gradeActivityCount(
        temporal.client,
        e.childWorkflowExecutionStartedEventAttributes!.workflowExecution!.workflowId!,
      );
    }
    expect(total).toBeLessThanOrEqual(7); // at most the one in flight at the kill was redone, in a fresh sandbox
    expect(sandboxDirs(home)).toEqual([]); // the new worker swept what the dead one left
  });
});
