import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../activities/paths';
import { roleQueue } from '../../domain/taskQueues';
import { runCli } from '../helpers/cli';
import { fixtureInstances, isolatedHome, writeInstances } from '../helpers/env';
import { startTestTemporal, type TestTemporal } from '../helpers/temporal';

/**
 * `entropo status | list` and the worker's warnings against a real dev server and a real `entropo worker`
 * process, as a user runs them with `TEMPORAL_ADDRESS` set.
 */
const home = isolatedHome('cli-runs');
const queuePrefix = 'cliruns';
let temporal: TestTemporal;
let worker: ChildProcess;
let workerLog = '';

const cli = (...args: string[]) => runCli(home, ...args);
const stage = defineSearchAttributeKey('EntropoStage', SearchAttributeType.KEYWORD);

beforeAll(async () => {
  temporal = await startTestTemporal(home);
  // runCli passes the environment on: every CLI call of this file talks to this server and queue.
  process.env.TEMPORAL_ADDRESS = temporal.address;
  process.env.ENTROPO_TASK_QUEUE_PREFIX = queuePrefix;
  worker = spawn(path.join(PROJECT_ROOT, 'bin', 'entropo'), ['worker', '--role', 'cpu', 'sandbox'], {
    env: { ...process.env, ENTROPO_HOME: home },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  await new Promise<void>((resolve, reject) => {
    worker.stderr!.on('data', (d: Buffer) => {
      workerLog += d.toString();
      if (workerLog.includes('worker ready')) resolve();
    });
    worker.once('exit', (code) => reject(new Error(`worker exited with ${code}: ${workerLog}`)));
  });
});

afterAll(async () => {
  if (worker && worker.exitCode === null) {
    const exited = new Promise((resolve) => worker.once('exit', resolve));
    worker.kill('SIGTERM');
    await exited;
  }
  await temporal?.close();
});

/** The problem lines of an `invalid …:` report, without the file they name. */
const problemLines = (text: string, file?: string) =>
  text
    .split('\n')
    .filter((l) => l.startsWith('  - '))
    .map((l) => (file ? l.replace(`${file}: `, '') : l))
    .sort();

describe('runs seen from the CLI', () => {
  it('a run whose config is rejected is tagged, listed, and its status says why', async () => {
    const document = { instances: 'x.jsonl', grading: 5 };
    const handle = await temporal.client.workflow.start('validateTasksWorkflow', {
      taskQueue: roleQueue(queuePrefix, 'cpu'),
      workflowId: 'validate/bad-config',
      args: [document],
    });
    await expect(handle.result()).rejects.toThrow();
    const description = await handle.describe();
    expect(description.status.name).toBe('FAILED');
    expect(description.typedSearchAttributes.get(stage)).toBe('validate');
    // Visibility catches up on its own time: wait for it, as a user would re-run the command.
    await expect
      .poll(async () => (await cli('list')).stdout, { timeout: 120_000, interval: 1000 })
      .toMatch(/^validate\/bad-config\s+FAILED/m);

    const status = await cli('status', 'bad-config');
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/^bad-config: FAILED/);
    expect(status.stdout).toContain('reason: (InvalidRunConfig) invalid run config:');
    expect(status.stdout).toContain('field "grading": expected a mapping of fields, got number');
    // The workflow id, as `entropo list` shows it, works too.
    expect((await cli('status', 'validate/bad-config')).stdout).toContain(
      'reason: (InvalidRunConfig) invalid run config:',
    );

    // The workflow and config-check give the same config the same answer.
    const file = path.join(home, 'bad-config.json');
    fs.writeFileSync(file, JSON.stringify(document));
    const check = await cli('config-check', file);
    expect(check.code).toBe(2);
    expect(problemLines(status.stdout)).toEqual(problemLines(check.stderr, file));
    expect(problemLines(status.stdout)).toHaveLength(1);
  });

  it('status or cancel of a run that does not exist exits 2 and says so', async () => {
    for (const command of ['status', 'cancel']) {
      const r = await cli(command, 'nosuch');
      expect(r.code, command).toBe(2);
      expect(r.stderr).toContain('no run nosuch');
    }
  });

  it("the worker's warning says which activity of which workflow failed, on which attempt, and why", async () => {
    const [row] = fixtureInstances();
    const file = writeInstances(home, [{ ...row, base_commit: 'deadbeef00' }], 'missing-base.jsonl');
    const handle = await temporal.client.workflow.start('validateTasksWorkflow', {
      taskQueue: roleQueue(queuePrefix, 'cpu'),
      workflowId: 'validate/missing-base',
      args: [{ instances: file, grading: { concurrency: 1 } }],
    });
    try {
      await expect
        .poll(() => workerLog, { timeout: 300_000, interval: 500 })
        .toMatch(
          /\[temporal WARN\] Activity failed \(activity createSandbox, workflow validate\/missing-base\/grade\/[^/]+\/gold, attempt 1\): .*deadbeef00/,
        );
    } finally {
      await handle.terminate('test done').catch(() => undefined);
    }
  });
});
