import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseTrajectoryFile } from '../../domain/agent/trajectory';
import type { RolloutPoolConfigInput, RolloutPoolProgress } from '../../domain/rolloutPool';
import { temporalBinary } from '../../infra/devServer';
import type { RolloutPoolResult } from '../../workflows/rolloutPool';
import { fixtureInstances, isolatedHome, writeInstances } from '../helpers/env';
import { type ScriptedOpenAI, startScriptedOpenAI } from '../helpers/scriptedOpenAI';
import { sandboxDirs, startTestTemporal, startTestWorkers, type TestTemporal } from '../helpers/temporal';

/** The rollout pool on a real dev server with in-process cpu, sandbox and llm workers and real sandboxes. */

const home = isolatedHome('pool');
const PREFIX = 'pool-test';
let temporal: TestTemporal;
let workers: Awaited<ReturnType<typeof startTestWorkers>>;
let instancesFile: string;

beforeAll(async () => {
  temporal = await startTestTemporal(home);
  workers = await startTestWorkers(temporal.address, PREFIX, ['cpu', 'sandbox', 'llm']);
  instancesFile = writeInstances(home, fixtureInstances().slice(0, 2));
});
afterAll(async () => {
  await workers?.stop();
  await temporal?.close();
});

describe('rolloutPoolWorkflow', () => {
  it('runs tasks × N episodes with per-episode seeds across continue-as-new, and writes trajectories and predictions', async () => {
    const config: RolloutPoolConfigInput = {
      runId: 'pool-demo',
      instances: instancesFile,
      policy: { kind: 'demonstrator' },
      n: 2,
      concurrency: 2,
      seed: 100,
      rolloutsPerRun: 3, // forces a continue-as-new after three episodes
    };
    const handle = await temporal.client.workflow.start('rolloutPoolWorkflow', {
      taskQueue: `${PREFIX}-cpu`,
      workflowId: 'rollouts/pool-demo',
      args: [config],
    });
    const result = (await handle.result()) as RolloutPoolResult;
    expect(result).toMatchObject({ runId: 'pool-demo', rollouts: 4, resolved: 4, failed: 0 });

    const { records, problems } = parseTrajectoryFile(fs.readFileSync(result.trajectoriesPath, 'utf8'), 'x');
    expect(problems).toEqual([]);
    expect(records.map((r) => [r.taskId, r.seed])).toEqual([
      [fixtureInstances()[0]!.instance_id, 100],
      [fixtureInstances()[0]!.instance_id, 101],
      [fixtureInstances()[1]!.instance_id, 102],
      [fixtureInstances()[1]!.instance_id, 103],
    ]);
    const predictions = fs
      .readFileSync(result.predictionsPath, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(predictions).toHaveLength(4);
    expect(predictions[0]).toEqual({
      instance_id: fixtureInstances()[0]!.instance_id,
      model_name_or_path: 'gold-patch-demonstrator',
      model_patch: records[0]!.patch,
    });
    // The pool continued as new once; its last run's progress counts every episode.
    const description = await handle.describe();
    expect(description.runId).not.toBe(handle.firstExecutionRunId);
    const progress = await handle.query<RolloutPoolProgress>('progress');
    expect(progress).toMatchObject({ stage: 'done', total: 4, done: 4, resolved: 4, queued: 0, running: 0 });
    expect(sandboxDirs(home)).toEqual([]);
  });

  it('refuses the demonstrator on a held-out suite before any episode runs', async () => {
    const dir = path.join(home, 'held-out');
    fs.mkdirSync(dir);
    const file = writeInstances(dir, fixtureInstances().slice(0, 1));
    fs.writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify({ name: 'held-out', heldOut: true }));
    const error = await temporal.client.workflow
      .execute('rolloutPoolWorkflow', {
        taskQueue: `${PREFIX}-cpu`,
        workflowId: 'rollouts/held-out',
        args: [{ instances: file, policy: { kind: 'demonstrator' } }],
      })
      .catch((e: unknown) => e as Error);
    let cause = error as { message?: string; cause?: unknown } | undefined;
    while (cause?.cause) cause = cause.cause as typeof cause;
    expect(cause?.message).toMatch(/marks this suite as held out/);
  });

  it('rejects a bad config naming the fields', async () => {
    const error = (await temporal.client.workflow
      .execute('rolloutPoolWorkflow', {
        taskQueue: `${PREFIX}-cpu`,
        workflowId: 'rollouts/bad',
        args: [{ instances: instancesFile, policy: { kind: 'openai' }, n: 0 }],
      })
      .catch((e: unknown) => e)) as { cause?: { message?: string } };
    expect(error.cause?.message).toContain('field "n"');
    expect(error.cause?.message).toContain('field "policy.endpoint"');
  });

  it('starts from the real temporal CLI with the same JSON, and cancelling it removes every sandbox', async () => {
    // A policy that always runs a command that hangs: episodes stay in flight until cancelled.
    const endpoint: ScriptedOpenAI = await startScriptedOpenAI(() => ({
      body: 'I wait.\n<function=execute_bash>\n<parameter=cmd>sleep 600</parameter>\n</function>',
    }));
    try {
      const input = path.join(home, 'pool.json');
      fs.writeFileSync(
        input,
        JSON.stringify({
          runId: 'from-cli',
          instances: instancesFile,
          policy: { kind: 'openai', endpoint: { baseUrl: endpoint.baseUrl, model: 'hang' } },
          n: 1,
          concurrency: 2,
          limits: { commandTimeoutSec: 600 },
        }),
      );
      await promisify(execFile)(temporalBinary(), [
        'workflow',
        'start',
        '--address',
        temporal.address,
        '--type',
        'rolloutPoolWorkflow',
        '--task-queue',
        `${PREFIX}-cpu`,
        '--workflow-id',
        'rollouts/from-cli',
        '--input-file',
        input,
      ]);
      const handle = temporal.client.workflow.getHandle('rollouts/from-cli');
      // Wait until both episodes hold a sandbox and run their command (the endpoint was asked twice).
      for (let i = 0; i < 1200 && endpoint.requests.length < 2; i++)
        await new Promise((r) => setTimeout(r, 250));
      expect(endpoint.requests.length).toBeGreaterThanOrEqual(2);
      expect(sandboxDirs(home).length).toBe(2);
      const progress = await handle.query<RolloutPoolProgress>('progress');
      expect(progress).toMatchObject({ runId: 'from-cli', total: 2, running: 2 });

      await handle.cancel();
      await handle.result().catch(() => undefined);
      for (let i = 0; i < 600 && sandboxDirs(home).length > 0; i++)
        await new Promise((r) => setTimeout(r, 250));
      expect(sandboxDirs(home)).toEqual([]);
    } finally {
      await endpoint.close();
    }
  });
});
