import { EXIT_REASONS } from './agent/limits';
import { seededShuffle } from './seededShuffle';

/**
 * The preference data set of EntroPO (DESIGN §6, paper §3.3): DPO pairs of a resolved ("chosen") and an
 * unresolved ("rejected") trajectory of the same task that share the system+task prefix, and KTO labels
 * (resolved = desirable) for every usable trajectory.
 *
 * Rules, in the order they are applied:
 * 1. Candidates are sorted by `rolloutId` first, so the input order never changes the result; a
 *    `rolloutId` seen twice is an error.
 * 2. Exclusions, the first that applies wins: exit reason `llm_error` / `sandbox_error` / `failed` (the
 *    trajectory says nothing about the policy), then `flagged` (grading saw the patch reach into the test
 *    machinery: a reward hack, never an example), then `ungraded` (`resolved === null`), then `duplicate`
 *    (same task, prefix and content as a candidate with a smaller `rolloutId`, which is kept). Truncated
 *    trajectories (step/token/time limit) stay: they are graded like any other.
 * 3. KTO: one label per usable trajectory.
 * 4. DPO, per task: every resolved × unresolved combination inside one prefix group (groups are never
 *    mixed), shuffled with a seed derived from `seed` and the task id (so a task's pairs do not depend on
 *    which other tasks are in the input), then picked greedily up to `maxPairsPerTask`: each pick is the
 *    first pair in shuffled order whose two trajectories have been used least (smallest max use, then
 *    smallest sum). This spreads the pairs over distinct chosen and rejected trajectories before any
 *    trajectory is used twice.
 * 5. Output order: tasks in order of first appearance in the rolloutId-sorted input; inside a task, pairs in
 *    pick order (`${taskId}#${k}`, k from 0) and KTO labels by rolloutId.
 */

export interface PairCandidate {
  rolloutId: string;
  taskId: string;
  /** Same value ⇔ same system prompt and task message (pairs need a shared prefix). */
  prefixKey: string;
  /** Same value ⇔ identical trajectory (same assistant outputs); duplicates are kept once. */
  contentKey: string;
  /** An ExitReason ('submitted'|'step_limit'|'token_limit'|'time_limit'|'llm_error'|'sandbox_error') or 'failed' (our workflow failed). */
  exitReason: string;
  /** null = not graded. */
  resolved: boolean | null;
  /** Grading flagged the patch for reaching into the test runner. */
  flagged: boolean;
  /** Who produced it, e.g. 'teacher' | 'student' (counted in stats). */
  source: string;
}

export interface PairingOptions {
  maxPairsPerTask: number;
  seed: number;
}

/** `chosen` and `rejected` are rollout ids. */
export interface PreferencePair {
  id: string;
  taskId: string;
  chosen: string;
  rejected: string;
}

export interface KtoLabel {
  rolloutId: string;
  taskId: string;
  label: boolean;
}

export type ExclusionReason = 'llm_error' | 'sandbox_error' | 'failed' | 'flagged' | 'ungraded' | 'duplicate';

export interface PairingStats {
  candidates: number;
  usable: number;
  excluded: Partial<Record<ExclusionReason, number>>;
  pairs: number;
  /** Distinct tasks among all candidates, usable or not. */
  tasks: number;
  /** Tasks with at least one pair. */
  tasksCovered: number;
  tasksWithoutResolved: string[];
  tasksWithoutUnresolved: string[];
  /** Tasks with both a usable resolved and a usable unresolved trajectory, but never in the same prefix group. */
  tasksWithoutSharedPrefix?: string[];
  /** KTO balance. */
  resolvedExamples: number;
  unresolvedExamples: number;
  /** Usable examples per source. */
  examplesBySource?: Record<string, { resolved: number; unresolved: number }>;
  /** pairs per source combination, e.g. {"teacher>student": 3, "student>student": 1} */
  pairSources: Record<string, number>;
}

export interface PairingResult {
  pairs: PreferencePair[];
  kto: KtoLabel[];
  stats: PairingStats;
  excluded: { rolloutId: string; reason: ExclusionReason }[];
}

const KNOWN_EXIT_REASONS: ReadonlySet<string> = new Set([...EXIT_REASONS, 'failed']);
const DISCARDED_EXIT_REASONS: ReadonlySet<string> = new Set(['llm_error', 'sandbox_error', 'failed']);

export function buildPreferencePairs(
  candidates: readonly PairCandidate[],
  options: PairingOptions,
): PairingResult {
  if (!Number.isInteger(options.maxPairsPerTask) || options.maxPairsPerTask < 0) {
    throw new Error(`pairing: maxPairsPerTask must be an integer ≥ 0, got ${options.maxPairsPerTask}`);
  }
  if (!Number.isInteger(options.seed)) {
    throw new Error(`pairing: seed must be an integer, got ${options.seed}`);
  }

  const sorted = [...candidates].sort((a, b) => compareStrings(a.rolloutId, b.rolloutId));
  for (let i = 0; i < sorted.length; i++) {
    const c = sorted[i]!;
    if (i > 0 && sorted[i - 1]!.rolloutId === c.rolloutId) {
      throw new Error(`pairing: rolloutId "${c.rolloutId}" appears more than once`);
    }
    if (!KNOWN_EXIT_REASONS.has(c.exitReason)) {
      throw new Error(
        `pairing: candidate "${c.rolloutId}" has unknown exitReason "${c.exitReason}" (expected one of ${[...KNOWN_EXIT_REASONS].join(', ')})`,
      );
    }
  }

  const taskOrder: string[] = [];
  const usableByTask = new Map<string, PairCandidate[]>();
  const excluded: PairingResult['excluded'] = [];
  const excludedCounts: Partial<Record<ExclusionReason, number>> = {};
  const seenContent = new Set<string>();
  for (const c of sorted) {
    if (!usableByTask.has(c.taskId)) {
      usableByTask.set(c.taskId, []);
      taskOrder.push(c.taskId);
    }
    const reason = exclusionReason(c, seenContent);
    if (reason) {
      excluded.push({ rolloutId: c.rolloutId, reason });
      excludedCounts[reason] = (excludedCounts[reason] ?? 0) + 1;
      continue;
    }
    seenContent.add(contentIdentity(c));
    usableByTask.get(c.taskId)!.push(c);
  }

  const pairs: PreferencePair[] = [];
  const kto: KtoLabel[] = [];
  const pairSources: Record<string, number> = {};
  const examplesBySource: Record<string, { resolved: number; unresolved: number }> = {};
  const tasksWithoutResolved: string[] = [];
  const tasksWithoutUnresolved: string[] = [];
  const tasksWithoutSharedPrefix: string[] = [];
  let tasksCovered = 0;
  let resolvedExamples = 0;
  let unresolvedExamples = 0;

  for (const taskId of taskOrder) {
    const usable = usableByTask.get(taskId)!;
    for (const c of usable) {
      kto.push({ rolloutId: c.rolloutId, taskId, label: c.resolved === true });
      const bySource = examplesBySource[c.source] ?? { resolved: 0, unresolved: 0 };
      examplesBySource[c.source] = bySource;
      if (c.resolved) {
        resolvedExamples++;
        bySource.resolved++;
      } else {
        unresolvedExamples++;
        bySource.unresolved++;
      }
    }
    const hasResolved = usable.some((c) => c.resolved);
    const hasUnresolved = usable.some((c) => !c.resolved);
    if (!hasResolved) tasksWithoutResolved.push(taskId);
    if (!hasUnresolved) tasksWithoutUnresolved.push(taskId);

    const combinations = pairCombinations(usable);
    if (hasResolved && hasUnresolved && combinations.length === 0) tasksWithoutSharedPrefix.push(taskId);
    const picked = pickSpread(
      seededShuffle(combinations, taskSeed(options.seed, taskId)),
      options.maxPairsPerTask,
    );
    if (picked.length > 0) tasksCovered++;
    picked.forEach(([chosen, rejected], k) => {
      pairs.push({ id: `${taskId}#${k}`, taskId, chosen: chosen.rolloutId, rejected: rejected.rolloutId });
      const key = `${chosen.source}>${rejected.source}`;
      pairSources[key] = (pairSources[key] ?? 0) + 1;
    });
  }

  return {
    pairs,
    kto,
    excluded,
    stats: {
      candidates: candidates.length,
      usable: resolvedExamples + unresolvedExamples,
      excluded: excludedCounts,
      pairs: pairs.length,
      tasks: taskOrder.length,
      tasksCovered,
      tasksWithoutResolved,
      tasksWithoutUnresolved,
      tasksWithoutSharedPrefix,
      resolvedExamples,
      unresolvedExamples,
      examplesBySource,
      pairSources,
    },
  };
}

function exclusionReason(c: PairCandidate, seenContent: ReadonlySet<string>): ExclusionReason | null {
  if (DISCARDED_EXIT_REASONS.has(c.exitReason)) return c.exitReason as ExclusionReason;
  if (c.flagged) return 'flagged';
  if (c.resolved === null) return 'ungraded';
  if (seenContent.has(contentIdentity(c))) return 'duplicate';
  return null;
}

function contentIdentity(c: PairCandidate): string {
  return JSON.stringify([c.taskId, c.prefixKey, c.contentKey]);
}

type Combination = [chosen: PairCandidate, rejected: PairCandidate];

/** Every resolved × unresolved combination inside each prefix group, groups in order of first appearance. */
function pairCombinations(usable: readonly PairCandidate[]): Combination[] {
  const groups = new Map<string, PairCandidate[]>();
  for (const c of usable) {
    const group = groups.get(c.prefixKey) ?? [];
    group.push(c);
    groups.set(c.prefixKey, group);
  }
  const out: Combination[] = [];
  for (const group of groups.values()) {
    for (const chosen of group) {
      if (!chosen.resolved) continue;
      for (const rejected of group) if (!rejected.resolved) out.push([chosen, rejected]);
    }
  }
  return out;
}

/** Greedy pick of up to `cap` pairs, each time the first (in `shuffled` order) whose trajectories are least used. */
function pickSpread(shuffled: readonly Combination[], cap: number): Combination[] {
  const uses = new Map<string, number>();
  const remaining = [...shuffled];
  const picked: Combination[] = [];
  while (picked.length < cap && remaining.length > 0) {
    let best = 0;
    let bestCost: [number, number] = [Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY];
    for (let i = 0; i < remaining.length; i++) {
      const [chosen, rejected] = remaining[i]!;
      const a = uses.get(chosen.rolloutId) ?? 0;
      const b = uses.get(rejected.rolloutId) ?? 0;
      const cost: [number, number] = [Math.max(a, b), a + b];
      if (cost[0] < bestCost[0] || (cost[0] === bestCost[0] && cost[1] < bestCost[1])) {
        best = i;
        bestCost = cost;
      }
    }
    const [pair] = remaining.splice(best, 1);
    picked.push(pair!);
    for (const c of pair!) uses.set(c.rolloutId, (uses.get(c.rolloutId) ?? 0) + 1);
  }
  return picked;
}

/** FNV-1a of the task id mixed with the seed: each task gets its own shuffle. */
function taskSeed(seed: number, taskId: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < taskId.length; i++) {
    hash ^= taskId.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  const high = Math.floor(seed / 4294967296);
  return (hash ^ Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(high >>> 0, 0x85ebca6b)) >>> 0;
}

/** Code-unit order, independent of locale. */
function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
