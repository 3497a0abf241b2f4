import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import { jsonLines, toSwebenchPrediction } from '../domain/agent/exporters';
import type { TrajectoryRecord } from '../domain/agent/trajectory';
import { type PoolSummary, type RolloutOutcome, summarizePool } from '../domain/rolloutPool';
import { isHeldOutSuite, type SuiteManifest } from '../domain/taskSuite';
import type { ArtifactStore } from './artifacts';
import { entropoHome } from './paths';
import { type LoadedInstance, loadInstances } from './tasks';

/** The rollout pool's cpu work: its tasks, its outcomes between runs, and the files it leaves. */

/**
 * The suite's tasks. The demonstrator reads gold patches, so it is refused on a held-out suite (its
 * manifest says so, or it is the test part of a split): those patches must never reach a policy.
 */
export async function loadRolloutTasks(
  deps: { store: ArtifactStore },
  request: { file: string; policyKind: string },
): Promise<LoadedInstance[]> {
  if (request.policyKind === 'demonstrator') {
    const manifestFile = path.join(path.dirname(path.resolve(request.file)), 'manifest.json');
    let manifest: SuiteManifest | undefined;
    try {
      manifest = JSON.parse(await fs.readFile(manifestFile, 'utf8')) as SuiteManifest;
    } catch {
      manifest = undefined; // a bare instance file: no suite, no mark
    }
    if (isHeldOutSuite(manifest)) {
      throw ApplicationFailure.nonRetryable(
        `the gold-patch demonstrator reads gold patches, and ${manifestFile} marks this suite as held out (a test split): use it on a training split only`,
        'HeldOutSuite',
      );
    }
  }
  return loadInstances(deps, request.file);
}

export async function storeOutcomes(
  deps: { store: ArtifactStore },
  outcomes: RolloutOutcome[],
): Promise<string> {
  return (await deps.store.putJson(outcomes)).id;
}

export interface PoolOutputs {
  rollouts: number;
  resolved: number;
  failed: number;
  trajectoriesPath: string;
  predictionsPath: string;
  summaryPath: string;
}

/**
 * `.entropo/runs/<run>/`: `trajectories.jsonl` (one record per finished episode, in task and episode
 * order), `predictions.jsonl` (SWE-bench's format, one row per episode) and `summary.json`.
 */
export async function writePoolOutputs(
  deps: { store: ArtifactStore },
  request: { runId: string; outcomeChunks: string[]; modelName: string },
): Promise<PoolOutputs> {
  const outcomes: RolloutOutcome[] = [];
  for (const id of request.outcomeChunks) outcomes.push(...(await deps.store.getJson<RolloutOutcome[]>(id)));
  const records: TrajectoryRecord[] = [];
  for (const o of outcomes)
    if (o.trajectoryId) records.push(await deps.store.getJson<TrajectoryRecord>(o.trajectoryId));
  const summary: PoolSummary & { runId: string; outcomes: RolloutOutcome[] } = {
    runId: request.runId,
    ...summarizePool(outcomes),
    outcomes,
  };
  const dir = path.join(entropoHome(), 'runs', request.runId);
  await fs.mkdir(dir, { recursive: true });
  const trajectoriesPath = path.join(dir, 'trajectories.jsonl');
  const predictionsPath = path.join(dir, 'predictions.jsonl');
  const summaryPath = path.join(dir, 'summary.json');
  await fs.writeFile(trajectoriesPath, jsonLines(records));
  await fs.writeFile(
    predictionsPath,
    jsonLines(records.map((r) => toSwebenchPrediction(r, request.modelName))),
  );
  await fs.writeFile(summaryPath, `${JSON.stringify(summary, null, 2)}\n`);
  return {
    rollouts: summary.rollouts,
    resolved: summary.resolved,
    failed: summary.failed,
    trajectoriesPath,
    predictionsPath,
    summaryPath,
  };
}

export function createRolloutPoolActivities(store: ArtifactStore) {
  return {
    loadRolloutTasks: (request: { file: string; policyKind: string }) => loadRolloutTasks({ store }, request),
    storeOutcomes: (outcomes: RolloutOutcome[]) => storeOutcomes({ store }, outcomes),
    writePoolOutputs: (request: { runId: string; outcomeChunks: string[]; modelName: string }) =>
      writePoolOutputs({ store }, request),
  };
}

export type RolloutPoolActivities = ReturnType<typeof createRolloutPoolActivities>;
