import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../activities/paths';
import { parseTrajectoryFile } from '../../domain/agent/trajectory';
import { parseInstancesOrThrow } from '../../domain/instance';
import type { RolloutPoolConfigInput } from '../../domain/rolloutPool';
import { buildTaskImages } from '../../infra/buildImages';
import type { RolloutPoolResult } from '../../workflows/rolloutPool';
import { dockerOrExplain } from '../helpers/docker';
import { isolatedHome } from '../helpers/env';
import { sandboxDirs, startTestTemporal, startTestWorkers, type TestTemporal } from '../helpers/temporal';

/**
 * The gold-patch demonstrator through the whole durable path — the pool, one rollout workflow per task, the
 * LLM activity's parser and the tools in a real sandbox, grading in a fresh sandbox — resolves every task of
 * the bundled quickstart suite, on the local backend and on docker (the images built from the same
 * sources, as `entropo tasks images quickstart` does).
 */

const home = isolatedHome('demo-quickstart');
const PREFIX = 'demo-quickstart';
const SUITE = path.join(PROJECT_ROOT, 'tasks', 'quickstart', 'instances.jsonl');
const instances = parseInstancesOrThrow(fs.readFileSync(SUITE, 'utf8'), SUITE);
let temporal: TestTemporal;
let workers: Awaited<ReturnType<typeof startTestWorkers>>;

beforeAll(async () => {
  temporal = await startTestTemporal(home);
  workers = await startTestWorkers(temporal.address, PREFIX, ['cpu', 'sandbox', 'llm']);
});
afterAll(async () => {
  await workers?.stop();
  await temporal?.close();
});

async function runSuite(backend: 'local' | 'docker'): Promise<void> {
  const config: RolloutPoolConfigInput = {
    runId: `demo-${backend}`,
    instances: SUITE,
    policy: { kind: 'demonstrator' },
    n: 1,
    concurrency: 4,
    sandbox: { backend },
  };
  const result = (await temporal.client.workflow.execute('rolloutPoolWorkflow', {
    taskQueue: `${PREFIX}-cpu`,
    workflowId: `rollouts/demo-${backend}`,
    args: [config],
  })) as RolloutPoolResult;
  const { records, problems } = parseTrajectoryFile(fs.readFileSync(result.trajectoriesPath, 'utf8'), 'x');
  expect(problems).toEqual([]);
  const outcomes = records.map((r) => [r.taskId, r.exitReason, r.reward]);
  expect(outcomes).toEqual(instances.map((i) => [i.instance_id, 'submitted', 1]));
  expect(result).toMatchObject({ rollouts: instances.length, resolved: instances.length, failed: 0 });
  // Every episode edited through the tools (str_replace), not by applying the patch.
  for (const record of records) {
    expect(record.steps.some((s) => s.call?.parameters?.command === 'str_replace')).toBe(true);
  }
}

describe('the demonstrator on the bundled quickstart suite, through the durable path', () => {
  it('resolves every task on the local backend', async () => {
    await runSuite('local');
    expect(sandboxDirs(home)).toEqual([]);
  });

  if (dockerOrExplain('the demonstrator on docker')) {
    it('resolves every task on the docker backend', async () => {
      await buildTaskImages(SUITE, { log: () => {} });
      await runSuite('docker');
    });
  }
});
