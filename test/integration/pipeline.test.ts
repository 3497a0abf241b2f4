import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseTrajectoryFile, type TrajectoryRecord } from '../../domain/agent/trajectory';
import { rootMessage } from '../../domain/failures';
import type { RunReport } from '../../domain/runReport';
import { temporalBinary } from '../../infra/devServer';
import type { PipelineProgress, PipelineResult } from '../../workflows/pipeline';
import { fixtureInstances, isolatedHome } from '../helpers/env';
import { baseModel, SUBMIT, smallPipelineConfig, startScriptedAgent } from '../helpers/pipelineRun';
import type { ScriptedOpenAI } from '../helpers/scriptedOpenAI';
import { sandboxDirs, startTestTemporal, startTestWorkers, type TestTemporal } from '../helpers/temporal';

/**
 * The whole pipeline on a real dev server, started with the real `temporal workflow start`: the demonstrator
 * as teacher, a scripted OpenAI-compatible policy (an endpoint outside our system) for the student and TTS,
 * real sandboxes, gradings and regression checks, and the real engine training SFT, EntroPO and the verifier
 * and scoring for one step each. The report's numbers are recomputed here from the trajectories it read.
 */

const home = isolatedHome('pipeline');
/**
 * Only catches a hang: each test runs the real engine on SmolLM2 several times (the second trains the
 * lambda = 0 baseline and evaluates it too), which took over 10 minutes with both cores kept busy.
 */
const PIPELINE_HANG_LIMIT_MS = 30 * 60_000;
const PREFIX = 'pipe-test';
let temporal: TestTemporal;
let workers: Awaited<ReturnType<typeof startTestWorkers>>;
let policy: ScriptedOpenAI;

beforeAll(async () => {
  temporal = await startTestTemporal(home);
  workers = await startTestWorkers(temporal.address, PREFIX, ['cpu', 'sandbox', 'llm', 'gpu']);
  policy = await startScriptedAgent();
}, 120_000);
afterAll(async () => {
  await workers?.stop();
  await temporal?.close();
  await policy?.close();
});

function records(file: string): TrajectoryRecord[] {
  const { records, problems } = parseTrajectoryFile(fs.readFileSync(file, 'utf8'), file);
  expect(problems).toEqual([]);
  return records;
}

/** pass@k by enumerating every k-subset of a task's episodes. */
function bruteForcePassAtK(resolved: boolean[], k: number): number {
  let hits = 0;
  let all = 0;
  const walk = (start: number, picked: boolean[]) => {
    if (picked.length === k) {
      all++;
      if (picked.some(Boolean)) hits++;
      return;
    }
    for (let i = start; i < resolved.length; i++) walk(i + 1, [...picked, resolved[i]!]);
  };
  walk(0, []);
  return hits / all;
}

describe('pipelineWorkflow', () => {
  it(
    'runs SFT → pool → pairs → EntroPO → TTS → selection → report from `temporal workflow start`, and resumes as a no-op',
    async () => {
      const [, , c] = fixtureInstances();
      const input = path.join(home, 'run.json');
      fs.writeFileSync(
        input,
        JSON.stringify(smallPipelineConfig(home, 'pipe', { kind: 'external', baseUrl: policy.baseUrl })),
      );
      const start = () =>
        promisify(execFile)(temporalBinary(), [
          'workflow',
          'start',
          '--address',
          temporal.address,
          '--type',
          'pipelineWorkflow',
          '--task-queue',
          `${PREFIX}-cpu`,
          '--workflow-id',
          'run/pipe',
          '--input-file',
          input,
        ]);
      await start();
      const handle = temporal.client.workflow.getHandle('run/pipe');
      const result = (await handle.result()) as PipelineResult;
      const progress = await handle.query<PipelineProgress>('progress');
      expect(progress.stages.map((s) => [s.stage, s.status])).toEqual([
        ['sft', 'done'],
        ['pool', 'done'],
        ['pairing', 'done'],
        ['training', 'done'],
        ['tts', 'done'],
        ['report', 'done'],
      ]);

      const report = JSON.parse(
        fs.readFileSync(path.join(path.dirname(result.reportPath), 'report.json'), 'utf8'),
      ) as RunReport;
      // Pairs: per training task, the teacher's resolved episode against the student's two unresolved ones.
      const artifacts = (stage: string) => report.stages.find((s) => s.stage === stage)!.artifacts;
      const teacher = records(artifacts('sft')['teacher trajectories']!);
      const student = records(artifacts('pool')['student trajectories']!);
      expect(teacher.map((r) => r.resolved)).toEqual([true, true]);
      expect(student).toHaveLength(4);
      expect(student.every((r) => r.resolved === false && r.exitReason === 'submitted')).toBe(true);
      // The scripted student's two episodes of a task are identical: kept once, so one pair per task.
      expect(report.pairing).toMatchObject({ pairs: 2, tasks: 2, tasksCovered: 2, tasksWithoutResolved: [] });
      const stats = JSON.parse(fs.readFileSync(artifacts('pairing').statistics!, 'utf8'));
      expect(stats).toMatchObject({ candidates: 6, usable: 4, excluded: { duplicate: 2 } });
      const pairs = fs
        .readFileSync(artifacts('pairing').pairs!, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      expect(pairs).toHaveLength(2);
      // A pair shares the system+task prefix; the resolved (teacher) side is `chosen`.
      for (const pair of pairs) {
        expect(pair.prompt.map((m: { role: string }) => m.role)).toEqual(['system', 'user']);
        expect(pair.rejected.at(-1).content).toBe(SUBMIT);
        expect(pair.chosen.at(-1).content).not.toBe(SUBMIT);
      }

      // Training: every stage took its step and left an adapter.
      expect(report.training.map((t) => [t.mode, t.steps])).toEqual([
        ['sft', 1],
        ['entropo-dpo', 1],
        ['verifier', 1],
      ]);
      for (const t of report.training)
        expect(fs.existsSync(path.join(t.adapterPath, 'adapter_config.json'))).toBe(true);

      // TTS numbers, recomputed from the episodes.
      const tts = records(artifacts('tts')['entropo trajectories']!);
      expect(tts).toHaveLength(2);
      const evaluation = report.evaluations[0]!;
      expect(evaluation.policy).toBe('entropo');
      const resolved = tts.map((r) => r.resolved === true);
      expect(evaluation.tasks).toBe(1);
      expect(evaluation.passAtK.map((p) => p.value)).toEqual(
        [1, 2].map((k) => bruteForcePassAtK(resolved, k)),
      );
      expect(evaluation.oracleBestOfN).toBe(resolved.some(Boolean) ? 1 : 0);
      const task = evaluation.perTask[0]!;
      const selected = tts.find((r) => r.rolloutId === task.selected)!;
      expect(task.selectedResolved).toBe(selected.resolved);
      expect(evaluation.selectedResolveRate).toBe(selected.resolved ? 1 : 0);
      // Both episodes submitted; the regression check passed both (a comment breaks no test).
      expect(task.survivors).toMatchObject({ candidates: 2, finished: 2, regressionFree: 2 });
      expect(new Set(tts.map((r) => r.patch)).size).toBe(evaluation.diversity.distinctPatches);
      const predictions = fs
        .readFileSync(result.predictionsPath, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      expect(predictions).toEqual([
        {
          instance_id: c!.instance_id,
          model_name_or_path: `${baseModel()}+entropo`,
          model_patch: selected.patch,
        },
      ]);
      const html = fs.readFileSync(result.htmlPath, 'utf8');
      expect(html).toContain('<svg');
      expect(fs.readFileSync(result.reportPath, 'utf8')).toContain(c!.instance_id as string);
      expect(sandboxDirs(home)).toEqual([]);

      // The same run again: every stage is recorded, nothing runs twice, the numbers are the same.
      const requestsBefore = policy.requests.length;
      await start();
      const again = (await handle.result()) as PipelineResult;
      const progressAgain = await temporal.client.workflow
        .getHandle('run/pipe')
        .query<PipelineProgress>('progress');
      expect(progressAgain.stages.slice(0, 5).map((s) => s.status)).toEqual([
        'reused',
        'reused',
        'reused',
        'reused',
        'reused',
      ]);
      expect(policy.requests.length).toBe(requestsBefore);
      expect(again.selectedResolveRate).toBe(result.selectedResolveRate);
      const reportAgain = JSON.parse(
        fs.readFileSync(path.join(path.dirname(again.reportPath), 'report.json'), 'utf8'),
      ) as RunReport;
      expect(reportAgain.evaluations).toEqual(report.evaluations);
    },
    PIPELINE_HANG_LIMIT_MS,
  );
  it(
    'a stage that fails names itself and its cause, keeps what was done, and the fixed run resumes there',
    async () => {
      // A model server that never becomes healthy: the command runs but never answers its health check.
      const broken = smallPipelineConfig(home, 'broken', {
        kind: 'command',
        command: ['sleep', '1000'],
        baseUrl: 'http://127.0.0.1:9/v1',
        startupTimeoutSec: 3,
      });
      const handle = await temporal.client.workflow.start('pipelineWorkflow', {
        taskQueue: `${PREFIX}-cpu`,
        workflowId: 'run/broken',
        args: [broken],
      });
      const failure = await handle.result().then(
        () => null,
        (e: Error) => e,
      );
      expect(rootMessage(failure)).toMatch(/^stage pool failed: .*(healthy|health)/s);
      const failed = await handle.query<PipelineProgress>('progress');
      expect(failed.stages.map((s) => s.status)).toEqual([
        'done',
        'failed',
        'pending',
        'pending',
        'pending',
        'pending',
      ]);

      // Fixed: the same run id resumes at the pool; the SFT stage is not run again.
      const requestsBefore = policy.requests.length;
      const fixed = await temporal.client.workflow.start('pipelineWorkflow', {
        taskQueue: `${PREFIX}-cpu`,
        workflowId: 'run/broken',
        // …with the lambda = 0 baseline asked for too: trained from the same SFT model and pairs, evaluated beside.
        args: [{ ...broken, serving: { kind: 'external', baseUrl: policy.baseUrl }, baselines: ['lambda0'] }],
      });
      const fixedResult = (await fixed.result()) as PipelineResult;
      const resumed = await fixed.query<PipelineProgress>('progress');
      expect(resumed.stages.map((s) => s.status)).toEqual(['reused', 'done', 'done', 'done', 'done', 'done']);
      const fixedReport = JSON.parse(
        fs.readFileSync(path.join(path.dirname(fixedResult.reportPath), 'report.json'), 'utf8'),
      ) as RunReport;
      expect(fixedReport.evaluations.map((e) => [e.policy, e.tasks])).toEqual([
        ['entropo', 1],
        ['lambda0', 1],
      ]);
      const trained = Object.fromEntries(fixedReport.training.map((t) => [t.stage, t]));
      const engineConfig = (adapterPath: string) =>
        JSON.parse(fs.readFileSync(path.join(adapterPath, '..', '..', 'config.json'), 'utf8'));
      expect(engineConfig(trained.lambda0!.adapterPath)).toMatchObject({ lambda: 0, mode: 'entropo-dpo' });
      expect(engineConfig(trained.entropo!.adapterPath).lambda).toBeGreaterThan(0);
      // Same pairs and the same reference: the two jobs differ in lambda only.
      const { lambda: _a, output_dir: _b, ...lambda0Rest } = engineConfig(trained.lambda0!.adapterPath);
      const { lambda: _c, output_dir: _d, ...entropoRest } = engineConfig(trained.entropo!.adapterPath);
      expect(lambda0Rest).toEqual(entropoRest);
      expect(trained.lambda0!.adapterId).toMatch(/^sha256:/);
      expect(policy.requests.length).toBeGreaterThan(requestsBefore);
      expect(sandboxDirs(home)).toEqual([]);
    },
    PIPELINE_HANG_LIMIT_MS,
  );
});
