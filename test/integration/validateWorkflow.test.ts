import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { WorkflowFailedError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArtifactStore } from '../../activities/artifacts';
import type { GradeReport } from '../../domain/grading';
import type { ValidateRunConfigInput } from '../../domain/runConfig';
import { temporalBinary } from '../../infra/devServer';
import type { ValidateTasksResult } from '../../workflows/validateTasks';
import { fixtureInstances, isolatedHome, writeInstances } from '../helpers/env';
import { sandboxDirs, startTestTemporal, startTestWorkers, type TestTemporal } from '../helpers/temporal';

const home = isolatedHome('validate');
const PREFIX = 'validate-test';
let temporal: TestTemporal;
let workers: Awaited<ReturnType<typeof startTestWorkers>>;

beforeAll(async () => {
  temporal = await startTestTemporal(home);
  workers = await startTestWorkers(temporal.address, PREFIX);
});
afterAll(async () => {
  await workers?.stop();
  await temporal?.close();
});

function run(config: ValidateRunConfigInput, workflowId: string): Promise<ValidateTasksResult> {
  return temporal.client.workflow.execute('validateTasksWorkflow', {
    taskQueue: `${PREFIX}-cpu`,
    workflowId,
    args: [config],
  });
}

describe('validateTasksWorkflow (real dev server, real bwrap)', () => {
  it('finds real instances valid and reports broken ones without stopping the run', async () => {
    const [good1, good2, good3] = fixtureInstances();
    const rows = [
      good1!,
      good2!,
      good3!,
      // A gold patch that does not apply: graded unresolved with the reason, not an error.
      {
        ...good1!,
        instance_id: 'broken-patch',
        patch: String(good1!.patch).replace(/in \(11, 12\)/g, 'in (99, 98)'),
      },
      // No source for the local sandbox: the grading fails with a clear reason, the run goes on.
      { ...good3!, instance_id: 'no-source', source: undefined },
    ];
    const file = writeInstances(home, rows);
    // The default test time limit: real pytest runs must never race a limit on a busy machine.
    const result = await run(
      { runId: 'mixed', instances: file, grading: { concurrency: 3 } },
      'validate/mixed',
    );

    expect(result.valid.sort()).toEqual([good1!.instance_id, good2!.instance_id, good3!.instance_id].sort());
    const problems = Object.fromEntries(result.invalid.map((i) => [i.instanceId, i.problem]));
    expect(problems['broken-patch']).toBe('gold patch does not resolve (patch did not apply)');
    expect(problems['no-source']).toMatch(/gold grading failed: .*has no "source"/);

    // The per-instance report holds the apply log: all three methods were tried for the broken patch.
    const verdicts = JSON.parse(fs.readFileSync(result.report.jsonPath, 'utf8')).verdicts as {
      instanceId: string;
      gold: { reportId: string };
    }[];
    const broken = verdicts.find((v) => v.instanceId === 'broken-patch')!;
    const report = await new ArtifactStore().getJson<GradeReport>(broken.gold.reportId);
    expect(report.applyAttempts.map((a) => a.method)).toEqual([
      'git apply',
      'git apply --reject',
      'patch --fuzz=5',
    ]);
    const good = verdicts.find((v) => v.instanceId === good1!.instance_id)!;
    const goodReport = await new ArtifactStore().getJson<GradeReport>(good.gold.reportId);
    expect(goodReport.appliedWith).toBe('git apply');
    expect(goodReport.resolution?.FAIL_TO_PASS.failure).toEqual([]);
    expect(fs.readFileSync(result.report.markdownPath, 'utf8')).toContain('3 of 5 instances valid');

    // Claim checks keep history small: no instance text or test log travels through Temporal.
    const history = JSON.stringify(await temporal.client.workflow.getHandle('validate/mixed').fetchHistory());
    const payloads = decodedPayloads(history);
    expect(payloads).toContain('broken-patch'); // the decoding sees what travelled…
    for (const big of ['def test_ordinal', 'ordinal() gives the wrong suffix', 'short test summary']) {
      expect(payloads).not.toContain(big); // …and no instance text or test log is among it
    }
    expect(history.length).toBeLessThan(10 * 8_000); // 10 gradings, a few KB of event metadata each
    expect(sandboxDirs(home)).toEqual([]);
  });

  it('grades tests that hang unresolved at the time limit', async () => {
    // The command hangs by itself, so the short limit is met however busy the machine is.
    const [good] = fixtureInstances();
    const file = writeInstances(
      home,
      [{ ...good!, instance_id: 'hanging-tests', test_command: 'sleep 600' }],
      'hang.jsonl',
    );
    const result = await run(
      { runId: 'hang', instances: file, grading: { testTimeoutSec: 3 } },
      'validate/hang',
    );
    expect(result.valid).toEqual([]);
    expect(result.invalid).toEqual([
      { instanceId: 'hanging-tests', problem: 'gold patch does not resolve (tests timed out after 3s)' },
    ]);
    expect(sandboxDirs(home)).toEqual([]);
  });

  it('rejects an invalid run config naming every bad field', async () => {
    const error = await run(
      { instances: '', grading: { concurrency: 0 }, bogus: true } as never,
      'validate/bad-config',
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WorkflowFailedError);
    const message = (error as WorkflowFailedError).cause?.message ?? '';
    expect(message).toContain('field "instances"');
    expect(message).toContain('field "grading.concurrency"');
    expect(message).toContain('field "bogus": unknown field');
  });

  it('fails fast naming file and line for an unparseable instance file', async () => {
    const file = path.join(home, 'broken.jsonl');
    fs.writeFileSync(file, `${JSON.stringify(fixtureInstances()[0])}\n{"instance_id": \n`);
    const error = (await run({ instances: file }, 'validate/broken-file').catch(
      (e: unknown) => e,
    )) as WorkflowFailedError;
    expect(error).toBeInstanceOf(WorkflowFailedError);
    type Chain = { message: string; cause?: unknown };
    let cause = error.cause as Chain | undefined;
    while (cause?.cause) cause = cause.cause as Chain;
    expect(cause?.message).toContain(`${file}:line 2: document: not valid JSON`);
  });

  it('runs from the real temporal CLI with the same JSON as input', async () => {
    const file = writeInstances(home, fixtureInstances().slice(0, 1), 'one.jsonl');
    const input = path.join(home, 'run.json');
    fs.writeFileSync(input, JSON.stringify({ runId: 'from-cli', instances: file }));
    // Async: the workers serving this run live in this process and need its event loop.
    const { stdout: output } = await promisify(execFile)(temporalBinary(), [
      'workflow',
      'execute',
      '--address',
      temporal.address,
      '--type',
      'validateTasksWorkflow',
      '--task-queue',
      `${PREFIX}-cpu`,
      '--workflow-id',
      'validate/from-cli',
      '--input-file',
      input,
      '--output',
      'json',
    ]);
    const result = JSON.parse(output).result as ValidateTasksResult;
    expect(result.runId).toBe('from-cli');
    expect(result.valid).toEqual([fixtureInstances()[0]!.instance_id]);
  });
});

/** History payloads are base64 JSON: decode every one so the check sees what travelled. */
function decodedPayloads(historyJson: string): string {
  return [...historyJson.matchAll(/"data":"([A-Za-z0-9+/=]+)"/g)]
    .map((m) => Buffer.from(m[1]!, 'base64').toString('utf8'))
    .join('\n');
}
