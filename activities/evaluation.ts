import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { jsonLines, toSwebenchPrediction } from '../domain/agent/exporters';
import type { TrajectoryRecord } from '../domain/agent/trajectory';
import {
  distinctPatches,
  meanPairwiseActionDistance,
  meanPassAtK,
  oracleBestOfN,
  resolveRate,
  ttsCurve,
} from '../domain/metrics';
import type { PolicyEvaluation } from '../domain/runReport';
import { type SelectionCandidate, type SelectorOptions, selectBestTrajectory } from '../domain/selector';
import type { ArtifactStore } from './artifacts';
import { readTrajectories, runDir } from './pipeline';
import { loadInstances } from './tasks';

/**
 * Test-time scaling's evaluation on the cpu role: the candidates a TTS pool left, and — once the regression
 * checks and scores are in — the hybrid selector per task and the metrics of DESIGN.md §8. Only what a policy
 * could know reaches the selector (finished, regression check, verifier, steps); `resolved` (the hidden
 * tests' verdict) is used afterwards, to score the selection.
 */

export interface TtsCandidate {
  rolloutId: string;
  taskId: string;
  index: number;
  instanceRef: string;
  finished: boolean;
  /** The final patch as an artifact; null when the episode changed nothing. */
  patchId: string | null;
}

export async function listCandidates(
  deps: { store: ArtifactStore },
  request: { trajectoriesPath: string; instances: string },
): Promise<TtsCandidate[]> {
  const refs = new Map(
    (await loadInstances(deps, request.instances)).map((i) => [i.instanceId, i.instanceRef]),
  );
  const out: TtsCandidate[] = [];
  for (const r of await readTrajectories(request.trajectoriesPath)) {
    const instanceRef = refs.get(r.taskId);
    if (!instanceRef)
      throw new Error(`${request.trajectoriesPath}: task ${r.taskId} is not in ${request.instances}`);
    out.push({
      rolloutId: r.rolloutId,
      taskId: r.taskId,
      index: episodeIndex(r),
      instanceRef,
      finished: r.exitReason === 'submitted',
      patchId: r.patch.trim() === '' ? null : (await deps.store.put(r.patch)).id,
    });
  }
  return out;
}

function episodeIndex(record: TrajectoryRecord): number {
  return Number(record.rolloutId.slice(record.rolloutId.lastIndexOf('/') + 1)) || 0;
}

export interface EvaluatePolicyRequest {
  runId: string;
  policy: string;
  modelName: string;
  trajectoriesPath: string;
  n: number;
  regression: Record<string, boolean | null>;
  /** Engine score outputs (`{id, p_yes}` / `{id, entropy, tokens}` lines); null when not scored. */
  verifierScores: string | null;
  entropyScores: string | null;
  selector: SelectorOptions & { regressionCheck: boolean };
  seed: number;
}

export interface PolicyEvaluationRef {
  policy: string;
  evaluationPath: string;
  predictionsPath: string;
  trajectoriesPath: string;
  selectedResolveRate: number;
  tasks: number;
  rollouts: number;
  generatedTokens: number;
}

async function readScores(file: string | null): Promise<Map<string, Record<string, number>>> {
  const scores = new Map<string, Record<string, number>>();
  if (!file) return scores;
  for (const line of (await fs.readFile(file, 'utf8')).split('\n')) {
    if (!line.trim()) continue;
    const row = JSON.parse(line) as { id: string } & Record<string, number>;
    scores.set(row.id, row);
  }
  return scores;
}

/** The action sequence of an episode, for diversity: each call's name and parameters. */
function actionsOf(record: TrajectoryRecord): string[] {
  return record.steps.map((s) =>
    s.call
      ? `${s.call.name}(${JSON.stringify(Object.entries(s.call.parameters).sort())})`
      : `!${s.error ?? 'no call'}`,
  );
}

export async function evaluatePolicy(
  _deps: { store: ArtifactStore },
  request: EvaluatePolicyRequest,
): Promise<PolicyEvaluationRef> {
  const records = await readTrajectories(request.trajectoriesPath);
  const verifier = await readScores(request.verifierScores);
  const entropy = await readScores(request.entropyScores);
  const byTask = new Map<string, TrajectoryRecord[]>();
  for (const r of records) byTask.set(r.taskId, [...(byTask.get(r.taskId) ?? []), r]);

  type Candidate = SelectionCandidate & { resolved: boolean };
  const candidateOf = (r: TrajectoryRecord): Candidate => ({
    rolloutId: r.rolloutId,
    finished: r.exitReason === 'submitted',
    regressionFree: request.regression[r.rolloutId] ?? null,
    verifierP: verifier.get(r.rolloutId)?.p_yes ?? null,
    steps: r.steps.length,
    resolved: r.resolved === true,
  });
  const options: SelectorOptions = { eta: request.selector.eta, prefer: request.selector.prefer };
  const pickFrom = (subset: readonly Candidate[]) => {
    const picked = selectBestTrajectory(subset, options).selected;
    return subset.find((c) => c.rolloutId === picked) ?? null;
  };

  const perTask: PolicyEvaluation['perTask'] = [];
  const selected: TrajectoryRecord[] = [];
  const taskCandidates: Candidate[][] = [];
  let patchesPerTask = 0;
  let distinctTotal = 0;
  let actionDistance = 0;
  for (const [taskId, episodes] of byTask) {
    const candidates = episodes.map(candidateOf);
    taskCandidates.push(candidates);
    const selection = selectBestTrajectory(candidates, options);
    const chosen = episodes.find((e) => e.rolloutId === selection.selected) ?? null;
    if (chosen) selected.push(chosen);
    const distinct = distinctPatches(episodes.map((e) => e.patch));
    distinctTotal += distinct;
    patchesPerTask += distinct / byTask.size;
    actionDistance += meanPairwiseActionDistance(episodes.map(actionsOf)) / byTask.size;
    perTask.push({
      taskId,
      resolved: episodes.filter((e) => e.resolved).length,
      rollouts: episodes.length,
      selected: selection.selected,
      selectedResolved: chosen ? chosen.resolved === true : null,
      survivors: selection.survivors,
    });
  }
  const counts = taskCandidates.map((c) => ({ n: c.length, c: c.filter((x) => x.resolved).length }));
  const minN = Math.min(...counts.map((c) => c.n));
  let tokens = 0;
  let entropySum = 0;
  for (const row of entropy.values()) {
    tokens += row.tokens ?? 0;
    entropySum += (row.entropy ?? 0) * (row.tokens ?? 0);
  }
  const evaluation: PolicyEvaluation = {
    policy: request.policy,
    tasks: byTask.size,
    n: request.n,
    selectedResolveRate: resolveRate(perTask.map((t) => t.selectedResolved)),
    passAtK:
      counts.length === 0
        ? []
        : Array.from({ length: minN }, (_, i) => ({ k: i + 1, value: meanPassAtK(counts, i + 1) })),
    oracleBestOfN: oracleBestOfN(taskCandidates.map((c) => ({ resolved: c.map((x) => x.resolved) }))),
    ttsCurve: ttsCurve(taskCandidates, pickFrom, { seed: request.seed }).map(({ n, resolveRate }) => ({
      n,
      resolveRate,
    })),
    diversity: {
      distinctPatches: distinctTotal,
      meanPatchesPerTask: patchesPerTask,
      actionDistance,
      meanTokenEntropy: tokens > 0 ? entropySum / tokens : null,
    },
    perTask,
  };
  const dir = runDir(request.runId, 'evaluation');
  await fs.mkdir(dir, { recursive: true });
  const evaluationPath = path.join(dir, `${request.policy}.json`);
  await fs.writeFile(evaluationPath, `${JSON.stringify(evaluation, null, 2)}\n`);
  const predictionsPath = path.join(dir, `${request.policy}.predictions.jsonl`);
  await fs.writeFile(
    predictionsPath,
    jsonLines(selected.map((r) => toSwebenchPrediction(r, request.modelName))),
  );
  return {
    policy: request.policy,
    evaluationPath,
    predictionsPath,
    trajectoriesPath: request.trajectoriesPath,
    selectedResolveRate: evaluation.selectedResolveRate,
    tasks: evaluation.tasks,
    rollouts: records.length,
    generatedTokens: records.reduce((sum, r) => sum + r.steps.reduce((s, step) => s + step.tokensOut, 0), 0),
  };
}

export function createEvaluationActivities(store: ArtifactStore) {
  return {
    listCandidates: (request: { trajectoriesPath: string; instances: string }) =>
      listCandidates({ store }, request),
    evaluatePolicy: (request: EvaluatePolicyRequest) => evaluatePolicy({ store }, request),
  };
}

export type EvaluationActivities = ReturnType<typeof createEvaluationActivities>;
