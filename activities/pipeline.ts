import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { jsonLines, toEngineTrajectory, toShareGpt } from '../domain/agent/exporters';
import { parseTrajectoryFile, type TrajectoryRecord } from '../domain/agent/trajectory';
import type { GradeReport } from '../domain/grading';
import { buildPreferencePairs, type PairCandidate, type PairingStats } from '../domain/pairing';
import type { ArtifactStore } from './artifacts';
import { entropoHome } from './paths';

/**
 * The pipeline's data work on the cpu role: stage records (what makes a stage idempotent), and the datasets
 * stages hand each other — SFT data from teacher episodes, preference pairs and KTO labels from the pool,
 * verifier data, scoring inputs. Files go under `.entropo/runs/<run>/`; workflows see paths and counts.
 */

/** A stage's recorded output, or null when the stage has not finished under this key. */
export async function lookupStage<T>(deps: { store: ArtifactStore }, key: string): Promise<T | null> {
  const record = await deps.store.getRecord<T>(`stage/${key}`);
  return record ? record.value : null;
}

export async function recordStage(
  deps: { store: ArtifactStore },
  key: string,
  output: unknown,
): Promise<void> {
  await deps.store.putRecord(`stage/${key}`, output);
}

export function runDir(runId: string, ...parts: string[]): string {
  return path.join(entropoHome(), 'runs', runId, ...parts);
}

export async function readTrajectories(file: string): Promise<TrajectoryRecord[]> {
  const { records, problems } = parseTrajectoryFile(await fs.readFile(file, 'utf8'), file);
  if (problems.length > 0)
    throw new Error(
      `${file}: ${problems.length} bad trajectory line(s), first: line ${problems[0]!.line} ${problems[0]!.field}: ${problems[0]!.message}`,
    );
  return records;
}

/** The texts trajectories refer to by artifact id (prompts, task messages, observations), fetched once. */
async function textsOf(
  store: ArtifactStore,
  records: readonly TrajectoryRecord[],
): Promise<(id: string) => string> {
  const ids = new Set<string>();
  for (const r of records) {
    ids.add(r.systemPromptId);
    ids.add(r.taskMessageId);
    for (const s of r.steps) if (s.observationId) ids.add(s.observationId);
  }
  const texts = new Map<string, string>();
  for (const id of ids) texts.set(id, await store.getText(id));
  return (id) => {
    const text = texts.get(id);
    if (text === undefined) throw new Error(`artifact ${id} was not fetched`);
    return text;
  };
}

async function writeJsonl(file: string, rows: readonly unknown[]): Promise<string> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.writeFile(file, jsonLines(rows));
  return file;
}

export interface SftDataRequest {
  runId: string;
  trajectoriesPath: string;
  keep: 'resolved' | 'submitted';
}

export interface SftData {
  path: string;
  sharegptPath: string;
  examples: number;
  /** Teacher episodes left out, by why. */
  dropped: Record<string, number>;
}

/**
 * SFT data from teacher episodes: those that submitted and (by default) resolved their task, as the engine's
 * trajectory rows and as LLaMA-Factory ShareGPT rows.
 */
export async function exportSftData(
  deps: { store: ArtifactStore },
  request: SftDataRequest,
): Promise<SftData> {
  const records = await readTrajectories(request.trajectoriesPath);
  const dropped: Record<string, number> = {};
  const kept = records.filter((r) => {
    const why =
      r.exitReason !== 'submitted'
        ? r.exitReason
        : request.keep === 'resolved' && !r.resolved
          ? 'unresolved'
          : null;
    if (why) dropped[why] = (dropped[why] ?? 0) + 1;
    return why === null;
  });
  const text = await textsOf(deps.store, kept);
  const engineRows = kept.map((r) => toEngineTrajectory(r, text)).filter((r) => r !== null);
  const sharegptRows = kept.map((r) => toShareGpt(r, text)).filter((r) => r !== null);
  const dir = runDir(request.runId, 'sft');
  return {
    path: await writeJsonl(path.join(dir, 'sft.jsonl'), engineRows),
    sharegptPath: await writeJsonl(path.join(dir, 'sft.sharegpt.jsonl'), sharegptRows),
    examples: engineRows.length,
    dropped,
  };
}

export interface PairingRequest {
  runId: string;
  /** Pool trajectory files and who produced them (`teacher`, `student`). */
  sources: { path: string; source: string }[];
  maxPairsPerTask: number;
  seed: number;
}

export interface PairingData {
  pairsPath: string;
  ktoPath: string;
  sharegptPairsPath: string;
  verifierPath: string;
  statsPath: string;
  stats: PairingStats;
  verifierExamples: number;
}

/** Whether grading flagged the episode's patch for reaching into the test runner. */
async function flaggedByGrading(store: ArtifactStore, record: TrajectoryRecord): Promise<boolean> {
  if (!record.gradingReportId) return false;
  const report = await store.getJson<GradeReport>(record.gradingReportId);
  return (report.runnerHooks?.length ?? 0) > 0;
}

/** Same assistant outputs ⇔ same trajectory (what a duplicate is for pairing). */
function contentKeyOf(record: TrajectoryRecord): string {
  const hash = createHash('sha256');
  for (const s of record.steps) hash.update(`${s.rawOutput}\u0000`);
  return hash.digest('hex');
}

/**
 * Preference data from the pool: DPO pairs (resolved ≻ unresolved of one task, same system+task prefix),
 * KTO labels, their LLaMA-Factory ShareGPT form, and the verifier's labelled trajectories. Episodes that
 * ended in an infrastructure error, or whose patch grading flagged, are never examples.
 */
export async function buildPairingData(
  deps: { store: ArtifactStore },
  request: PairingRequest,
): Promise<PairingData> {
  const byId = new Map<string, TrajectoryRecord>();
  const candidates: PairCandidate[] = [];
  for (const { path: file, source } of request.sources) {
    for (const r of await readTrajectories(file)) {
      byId.set(r.rolloutId, r);
      candidates.push({
        rolloutId: r.rolloutId,
        taskId: r.taskId,
        prefixKey: `${r.systemPromptId}+${r.taskMessageId}`,
        contentKey: contentKeyOf(r),
        exitReason: r.exitReason,
        resolved: r.resolved,
        flagged: await flaggedByGrading(deps.store, r),
        source,
      });
    }
  }
  const { pairs, kto, stats } = buildPreferencePairs(candidates, {
    maxPairsPerTask: request.maxPairsPerTask,
    seed: request.seed,
  });
  const used = new Set<string>([
    ...pairs.flatMap((p) => [p.chosen, p.rejected]),
    ...kto.map((k) => k.rolloutId),
  ]);
  const text = await textsOf(
    deps.store,
    [...used].map((id) => byId.get(id)!),
  );
  const messagesOf = (id: string) => toEngineTrajectory(byId.get(id)!, text)?.messages ?? [];
  const pairRows = pairs.map((p) => {
    const chosen = messagesOf(p.chosen);
    const rejected = messagesOf(p.rejected);
    // The shared system+task prefix goes in `prompt`, so the engine runs it once per pair.
    return { id: p.id, prompt: chosen.slice(0, 2), chosen: chosen.slice(2), rejected: rejected.slice(2) };
  });
  const ktoRows = kto.map((k) => {
    const messages = messagesOf(k.rolloutId);
    return { id: k.rolloutId, prompt: messages.slice(0, 2), completion: messages.slice(2), label: k.label };
  });
  const sharegptPairs = pairs.map((p) => {
    const chosen = toShareGpt(byId.get(p.chosen)!, text)!;
    const rejected = toShareGpt(byId.get(p.rejected)!, text)!;
    // LLaMA-Factory's pairwise ShareGPT: the shared conversation, then the two last replies. Multi-turn
    // trajectories differ before their last reply, so the whole conversation is kept per side as well.
    return {
      id: p.id,
      system: chosen.system,
      conversations: chosen.conversations.slice(0, 1),
      chosen: {
        from: 'gpt',
        value: chosen.conversations
          .slice(1)
          .map((t) => t.value)
          .join('\n'),
      },
      rejected: {
        from: 'gpt',
        value: rejected.conversations
          .slice(1)
          .map((t) => t.value)
          .join('\n'),
      },
      chosen_conversations: chosen.conversations,
      rejected_conversations: rejected.conversations,
    };
  });
  const verifierRows = kto.map((k) => ({
    ...toEngineTrajectory(byId.get(k.rolloutId)!, text)!,
    resolved: k.label,
  }));
  const dir = runDir(request.runId, 'pairing');
  const statsPath = path.join(dir, 'stats.json');
  await fs.mkdir(dir, { recursive: true });
  await fs.writeFile(statsPath, `${JSON.stringify(stats, null, 2)}\n`);
  return {
    pairsPath: await writeJsonl(path.join(dir, 'pairs.jsonl'), pairRows),
    ktoPath: await writeJsonl(path.join(dir, 'kto.jsonl'), ktoRows),
    sharegptPairsPath: await writeJsonl(path.join(dir, 'pairs.sharegpt.jsonl'), sharegptPairs),
    verifierPath: await writeJsonl(path.join(dir, 'verifier.jsonl'), verifierRows),
    statsPath,
    stats,
    verifierExamples: verifierRows.length,
  };
}

/** Every episode of a trajectory file as an engine trajectory row (for verifier and entropy scoring). */
export async function exportScoringData(
  deps: { store: ArtifactStore },
  request: { runId: string; name: string; trajectoriesPath: string },
): Promise<{ path: string; rows: number }> {
  const records = (await readTrajectories(request.trajectoriesPath)).filter((r) => r.steps.length > 0);
  const text = await textsOf(deps.store, records);
  const rows = records.map((r) => toEngineTrajectory(r, text)!);
  const file = await writeJsonl(runDir(request.runId, 'scoring', `${request.name}.jsonl`), rows);
  return { path: file, rows: rows.length };
}

export function createPipelineActivities(store: ArtifactStore) {
  const deps = { store };
  return {
    lookupStage: <T>(key: string) => lookupStage<T>(deps, key),
    recordStage: (key: string, output: unknown) => recordStage(deps, key, output),
    exportSftData: (request: SftDataRequest) => exportSftData(deps, request),
    buildPairingData: (request: PairingRequest) => buildPairingData(deps, request),
    exportScoringData: (request: { runId: string; name: string; trajectoriesPath: string }) =>
      exportScoringData(deps, request),
  };
}

export type PipelineActivities = ReturnType<typeof createPipelineActivities>;
