import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { configHash, type PipelineConfig } from '../domain/pipelineConfig';
import type { PolicyEvaluation, RunReport, StageReport, TrainingCurvePoint } from '../domain/runReport';
import type { ArtifactStore } from './artifacts';
import type { PolicyEvaluationRef } from './evaluation';
import { PROJECT_ROOT } from './paths';
import { type PairingData, readTrajectories, runDir } from './pipeline';
import { renderRunReport } from './reportRender';

/**
 * The run's report (DESIGN.md §8): gathers what the stages left (evaluations, pairing statistics, training
 * curves, stage times and tokens) into a {@link RunReport}, renders it as Markdown and offline HTML, and
 * writes the SWE-bench predictions of the trained policy's selected patches.
 */

export interface WriteRunReportRequest {
  runId: string;
  config: PipelineConfig;
  stages: { stage: string; status: string; wallMs?: number; error?: string }[];
  sft: {
    teacher: { trajectoriesPath: string };
    adapter: string;
    adapterId?: string | null;
    jobDir: string | null;
    data: { path: string; sharegptPath: string; examples: number } | null;
  };
  pool: { sources: { path: string; source: string }[] };
  pairing: PairingData | { given: string };
  training: {
    policy: { adapter: string; adapterId?: string | null; jobDir: string; mode: string };
    verifier: { adapter: string; adapterId?: string | null; jobDir: string } | null;
    lambda0?: { adapter: string; adapterId?: string | null; jobDir: string };
  };
  evaluations: PolicyEvaluationRef[];
}

export interface RunReportResult {
  reportPath: string;
  htmlPath: string;
  predictionsPath: string;
  /** The headline, for the CLI to print. */
  verdict: string[];
  selectedResolveRate: number;
}

interface StepEvent {
  event: string;
  step?: number;
  loss?: number;
  reward_accuracy?: number;
  margin?: number;
  entropy?: number;
  tokens?: number;
}

async function engineEvents(jobDir: string | null): Promise<StepEvent[]> {
  if (!jobDir) return [];
  try {
    return (await fs.readFile(path.join(jobDir, 'events.jsonl'), 'utf8'))
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as StepEvent);
  } catch {
    return [];
  }
}

/** One point per optimizer step (a resumed job logs a step again: the last report of a step wins). */
function curveOf(events: StepEvent[]): TrainingCurvePoint[] {
  const byStep = new Map<number, TrainingCurvePoint>();
  for (const e of events) {
    if (e.event !== 'step' || e.step === undefined || e.loss === undefined) continue;
    byStep.set(e.step, {
      step: e.step,
      loss: e.loss,
      ...(e.reward_accuracy !== undefined ? { rewardAccuracy: e.reward_accuracy } : {}),
      ...(e.margin !== undefined ? { margin: e.margin } : {}),
      ...(e.entropy !== undefined ? { entropy: e.entropy } : {}),
    });
  }
  return [...byStep.values()].sort((a, b) => a.step - b.step);
}

function trainingTokens(events: StepEvent[]): number {
  const byStep = new Map<number, number>();
  for (const e of events) if (e.event === 'step' && e.step !== undefined) byStep.set(e.step, e.tokens ?? 0);
  return [...byStep.values()].reduce((a, b) => a + b, 0);
}

async function generatedTokens(file: string): Promise<number> {
  try {
    const records = await readTrajectories(file);
    return records.reduce((sum, r) => sum + r.steps.reduce((s, step) => s + step.tokensOut, 0), 0);
  } catch {
    return 0;
  }
}

function howToServe(base: string, name: string, adapter: string): string {
  return `python -m entropo_engine serve --config serve.yaml (model: ${base}, adapters: {${name}: ${adapter}}) · or vllm serve <base model> --enable-lora --lora-modules ${name}=${adapter}`;
}

function howToMerge(adapter: string): string {
  return `python -c "from peft import AutoPeftModelForCausalLM as M; M.from_pretrained('${adapter}').merge_and_unload().save_pretrained('merged')"`;
}

function provenance(config: PipelineConfig): RunReport['provenance'] {
  let commit = 'unknown (not a git checkout)';
  try {
    commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: PROJECT_ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], {
      cwd: PROJECT_ROOT,
      encoding: 'utf8',
    }).trim();
    if (dirty) commit += ' (with uncommitted changes)';
  } catch {
    // no git here: say so rather than guess
  }
  const packages: Record<string, string> = {};
  try {
    const pkg = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as {
      dependencies?: Record<string, string>;
    };
    for (const [name, version] of Object.entries(pkg.dependencies ?? {})) packages[name] = version;
    const pins = readFileSync(path.join(PROJECT_ROOT, 'engine', 'requirements.txt'), 'utf8');
    for (const line of pins.split('\n')) {
      const match = /^([A-Za-z0-9_.-]+)==([^\s;#]+)/.exec(line.trim());
      if (match) packages[match[1]!] = match[2]!;
    }
  } catch {
    // a partial list is still worth printing
  }
  packages.node = process.version;
  return {
    commit,
    packages,
    configHash: configHash(config),
    seeds: { run: config.seed, pool: config.seed + 1_000_000, tts: config.seed + 2_000_000 },
  };
}

function verdictOf(config: PipelineConfig, evaluations: readonly PolicyEvaluation[]): string[] {
  const lines: string[] = [];
  for (const e of evaluations) {
    const selected = e.perTask.filter((t) => t.selectedResolved).length;
    const oracle = Math.round(e.oracleBestOfN * e.tasks);
    lines.push(
      `${e.policy}: the selected patch resolved ${selected} of ${e.tasks} held-out task(s) (${(e.selectedResolveRate * 100).toFixed(1)}%); at least one of ${e.n} episodes resolved ${oracle} (oracle best-of-${e.n}).`,
    );
  }
  const trained = evaluations[0];
  if (trained && trained.selectedResolveRate === 0 && trained.oracleBestOfN === 0) {
    lines.push(
      `${config.model.base} solved none of the held-out tasks. With a model this small and budgets this tight that is the expected result: this run shows the pipeline working end to end, not that the method helps at this scale.`,
    );
  }
  return lines;
}

export async function writeRunReport(
  _deps: { store: ArtifactStore },
  request: WriteRunReportRequest,
): Promise<RunReportResult> {
  const { config } = request;
  const evaluations: PolicyEvaluation[] = [];
  for (const ref of request.evaluations)
    evaluations.push(JSON.parse(await fs.readFile(ref.evaluationPath, 'utf8')) as PolicyEvaluation);

  const sftEvents = await engineEvents(request.sft.jobDir);
  const policyEvents = await engineEvents(request.training.policy.jobDir);
  const verifierEvents = await engineEvents(request.training.verifier?.jobDir ?? null);
  const lambda0Events = await engineEvents(request.training.lambda0?.jobDir ?? null);
  const pairing = 'given' in request.pairing ? null : request.pairing;

  const dir = runDir(request.runId);
  await fs.mkdir(dir, { recursive: true });
  const predictionsPath = path.join(dir, 'predictions.jsonl');
  const trained = request.evaluations[0];
  await fs.writeFile(predictionsPath, trained ? await fs.readFile(trained.predictionsPath) : '');

  const tokensByStage: Record<string, number> = {
    sft: (await generatedTokens(request.sft.teacher.trajectoriesPath)) + trainingTokens(sftEvents),
    pool: (
      await Promise.all(
        request.pool.sources.filter((s) => s.source !== 'teacher').map((s) => generatedTokens(s.path)),
      )
    ).reduce((a, b) => a + b, 0),
    training: trainingTokens(policyEvents) + trainingTokens(verifierEvents) + trainingTokens(lambda0Events),
    tts: request.evaluations.reduce((sum, e) => sum + e.generatedTokens, 0),
  };
  const artifactsByStage: Record<string, Record<string, string>> = {
    sft: {
      'teacher trajectories': request.sft.teacher.trajectoriesPath,
      ...(request.sft.data
        ? { 'SFT data': request.sft.data.path, 'SFT data (ShareGPT)': request.sft.data.sharegptPath }
        : {}),
      adapter: request.sft.adapter,
    },
    pool: Object.fromEntries(request.pool.sources.map((s) => [`${s.source} trajectories`, s.path])),
    pairing: pairing
      ? {
          pairs: pairing.pairsPath,
          'KTO labels': pairing.ktoPath,
          'pairs (ShareGPT)': pairing.sharegptPairsPath,
          'verifier data': pairing.verifierPath,
          statistics: pairing.statsPath,
        }
      : { pairs: (request.pairing as { given: string }).given },
    training: {
      policy: request.training.policy.adapter,
      ...(request.training.verifier ? { verifier: request.training.verifier.adapter } : {}),
      ...(request.training.lambda0 ? { 'lambda = 0 baseline': request.training.lambda0.adapter } : {}),
    },
    tts: Object.fromEntries(request.evaluations.map((e) => [`${e.policy} trajectories`, e.trajectoriesPath])),
    report: { predictions: predictionsPath },
  };
  const stages: StageReport[] = request.stages.map((s) => ({
    stage: s.stage,
    status:
      s.status === 'reused'
        ? 'skipped'
        : s.status === 'running'
          ? 'done'
          : (s.status as StageReport['status']),
    wallMs: s.wallMs ?? null,
    tokens: tokensByStage[s.stage] ?? null,
    artifacts: artifactsByStage[s.stage] ?? {},
    ...(s.status === 'reused' ? { note: 'recorded by an earlier attempt of this run; not run again' } : {}),
    ...(s.error ? { note: s.error } : {}),
  }));

  const base = config.model.base;
  // Each trained adapter is its own series in the training chart.
  const series = (
    stage: string,
    mode: string,
    events: StepEvent[],
    job: { adapter: string; adapterId?: string | null },
  ) => ({ stage, mode, events, adapter: job.adapter, adapterId: job.adapterId ?? null });
  const { policy, verifier, lambda0 } = request.training;
  const training: RunReport['training'] = [
    ...(request.sft.jobDir ? [series('sft', 'sft', sftEvents, request.sft)] : []),
    series('entropo', `entropo-${policy.mode}`, policyEvents, policy),
    ...(verifier ? [series('verifier', 'verifier', verifierEvents, verifier)] : []),
    ...(lambda0 ? [series('lambda0', `entropo-${policy.mode} (lambda = 0)`, lambda0Events, lambda0)] : []),
  ].map((t) => {
    const curve = curveOf(t.events);
    return {
      stage: t.stage,
      mode: t.mode,
      steps: curve.length,
      curve,
      adapterPath: t.adapter,
      adapterId: t.adapterId,
      serve: howToServe(base, t.stage, t.adapter),
      merge: howToMerge(t.adapter),
    };
  });

  const verdict = verdictOf(config, evaluations);
  const report: RunReport = {
    runId: request.runId,
    title: `EntroPO run ${request.runId}`,
    model: base,
    generatedAt: new Date().toISOString(),
    stages,
    pairing: pairing
      ? {
          pairs: pairing.stats.pairs,
          tasks: pairing.stats.tasks,
          tasksCovered: pairing.stats.tasksCovered,
          tasksWithoutResolved: pairing.stats.tasksWithoutResolved,
          tasksWithoutUnresolved: pairing.stats.tasksWithoutUnresolved,
          resolvedExamples: pairing.stats.resolvedExamples,
          unresolvedExamples: pairing.stats.unresolvedExamples,
        }
      : null,
    training,
    evaluations,
    predictionsPath,
    provenance: provenance(config),
    verdict,
  };
  await fs.writeFile(path.join(dir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
  const rendered = await renderRunReport(report, dir);
  return {
    reportPath: rendered.markdownPath,
    htmlPath: rendered.htmlPath,
    predictionsPath,
    verdict,
    selectedResolveRate: evaluations[0]?.selectedResolveRate ?? 0,
  };
}

export function createReportActivities(store: ArtifactStore) {
  return { writeRunReport: (request: WriteRunReportRequest) => writeRunReport({ store }, request) };
}

export type ReportActivities = ReturnType<typeof createReportActivities>;
