import { mulberry32 } from './seededShuffle';

/**
 * The numbers a run reports (DESIGN §8): pass@k, oracle best-of-N, the test-time-scaling curve of a
 * selector, and the diversity of a task's rollouts. Aggregates over an empty list of tasks are 0 (nothing
 * was resolved), not NaN, so a degenerate run still renders a report.
 */

/**
 * Unbiased pass@k (Chen et al. 2021): the probability that a uniformly random k-subset of n samples, c of
 * them correct, holds at least one correct sample: 1 − C(n−c, k) / C(n, k), computed as the product
 * ∏_{i=n−c+1}^{n} (1 − k/i), which never forms a large binomial.
 */
export function passAtK(n: number, c: number, k: number): number {
  if (!Number.isInteger(n) || n < 1) throw new Error(`passAtK: n must be an integer ≥ 1, got ${n}`);
  if (!Number.isInteger(c) || c < 0 || c > n)
    throw new Error(`passAtK: c must be an integer in [0, n=${n}], got ${c}`);
  if (!Number.isInteger(k) || k < 1 || k > n)
    throw new Error(`passAtK: k must be an integer in [1, n=${n}], got ${k}`);
  if (n - c < k) return 1;
  let allWrong = 1;
  for (let i = n - c + 1; i <= n; i++) allWrong *= 1 - k / i;
  return 1 - allWrong;
}

/** Mean of pass@k over tasks (each with n samples, c correct); 0 for no tasks. */
export function meanPassAtK(tasks: readonly { n: number; c: number }[], k: number): number {
  if (tasks.length === 0) return 0;
  let sum = 0;
  tasks.forEach((t, i) => {
    try {
      sum += passAtK(t.n, t.c, k);
    } catch (error) {
      throw new Error(`meanPassAtK: task ${i}: ${(error as Error).message}`);
    }
  });
  return sum / tasks.length;
}

/** Fraction of tasks where any rollout resolved the task (a task with no rollouts counts as unresolved). */
export function oracleBestOfN(tasks: readonly { resolved: boolean[] }[]): number {
  if (tasks.length === 0) return 0;
  return tasks.filter((t) => t.resolved.some((r) => r)).length / tasks.length;
}

export interface TtsPoint {
  /** Rollouts available to the selector. */
  n: number;
  /** Mean over tasks of the expected resolve rate of the selection. */
  resolveRate: number;
  /** Every task's value at this n was enumerated, not sampled. */
  exact: boolean;
}

export interface TtsOptions {
  /** Seed of the sampled subsets (default 0). */
  seed?: number;
  /** Subsets sampled per task and n when enumeration is too big (default 2000). */
  samples?: number;
  /** Enumerate every subset when there are at most this many (default 5000). */
  exactLimit?: number;
}

/**
 * TTS curve: for m = 1..N (N = the largest number of candidates of a task), the mean over tasks of the
 * expected resolve rate of `select` on a uniformly random subset of size m of the task's candidates. A task
 * with fewer than m candidates offers all of them; a task with none counts as unresolved. Subsets keep
 * the candidates' order (selectors break ties by it). Exact (every one of the C(N, m) subsets) when
 * C(N, m) ≤ `exactLimit`, else `samples` random subsets from a generator seeded by `seed`, the task index
 * and m. A `select` that returns null counts as unresolved.
 */
export function ttsCurve<T extends { resolved: boolean }>(
  tasks: readonly (readonly T[])[],
  select: (subset: readonly T[]) => T | null,
  options: TtsOptions = {},
): TtsPoint[] {
  const seed = options.seed ?? 0;
  const samples = options.samples ?? 2000;
  const exactLimit = options.exactLimit ?? 5000;
  if (!Number.isInteger(seed)) throw new Error(`ttsCurve: seed must be an integer, got ${seed}`);
  if (!Number.isInteger(samples) || samples < 1) {
    throw new Error(`ttsCurve: samples must be an integer ≥ 1, got ${samples}`);
  }
  if (!Number.isInteger(exactLimit) || exactLimit < 1) {
    throw new Error(`ttsCurve: exactLimit must be an integer ≥ 1, got ${exactLimit}`);
  }
  const maxN = Math.max(0, ...tasks.map((t) => t.length));
  const resolvedBy = (subset: readonly T[]) => (select(subset)?.resolved === true ? 1 : 0);
  const curve: TtsPoint[] = [];
  for (let m = 1; m <= maxN; m++) {
    let sum = 0;
    let exact = true;
    tasks.forEach((candidates, taskIndex) => {
      const size = Math.min(m, candidates.length);
      if (size === 0) return;
      if (binomialAtMost(candidates.length, size, exactLimit)) {
        let resolved = 0;
        let count = 0;
        forEachSubset(candidates.length, size, (indices) => {
          resolved += resolvedBy(indices.map((i) => candidates[i]!));
          count++;
        });
        sum += resolved / count;
      } else {
        exact = false;
        const random = mulberry32(mixSeed(seed, taskIndex, m));
        let resolved = 0;
        for (let s = 0; s < samples; s++) {
          resolved += resolvedBy(randomSubset(candidates.length, size, random).map((i) => candidates[i]!));
        }
        sum += resolved / samples;
      }
    });
    curve.push({ n: m, resolveRate: tasks.length === 0 ? 0 : sum / tasks.length, exact });
  }
  return curve;
}

/** Whether C(n, k) ≤ limit, without forming a binomial larger than the limit. */
function binomialAtMost(n: number, k: number, limit: number): boolean {
  const r = Math.min(k, n - k);
  let value = 1;
  for (let i = 1; i <= r; i++) {
    value = (value * (n - r + i)) / i;
    if (value > limit) return false;
  }
  return true;
}

/** Every k-subset of 0..n−1 as ascending indices, in lexicographic order. */
function forEachSubset(n: number, k: number, visit: (indices: readonly number[]) => void): void {
  const indices = Array.from({ length: k }, (_, i) => i);
  for (;;) {
    visit(indices);
    let i = k - 1;
    while (i >= 0 && indices[i] === n - k + i) i--;
    if (i < 0) return;
    indices[i]!++;
    for (let j = i + 1; j < k; j++) indices[j] = indices[j - 1]! + 1;
  }
}

/** A uniform k-subset of 0..n−1 (partial Fisher–Yates), as ascending indices. */
function randomSubset(n: number, k: number, random: () => number): number[] {
  const pool = Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(random() * (n - i));
    [pool[i], pool[j]] = [pool[j]!, pool[i]!];
  }
  return pool.slice(0, k).sort((a, b) => a - b);
}

function mixSeed(seed: number, taskIndex: number, m: number): number {
  let h = Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(Math.floor(seed / 4294967296) >>> 0, 0x85ebca6b);
  h = Math.imul(h ^ taskIndex, 0x27d4eb2d) ^ m;
  return Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) >>> 0;
}

/**
 * Number of distinct final patches, compared after trimming trailing whitespace of every line and trailing
 * blank lines. An empty patch (no change) is not a patch and is not counted.
 */
export function distinctPatches(patches: readonly string[]): number {
  const distinct = new Set<string>();
  for (const patch of patches) {
    const normalised = patch
      .split('\n')
      .map((line) => line.trimEnd())
      .join('\n')
      .replace(/\n+$/, '');
    if (normalised !== '') distinct.add(normalised);
  }
  return distinct.size;
}

/**
 * Mean over all unordered pairs of sequences of Levenshtein distance over the action tokens divided by the
 * longer length (two empty sequences: 0); 0 when there are fewer than 2 sequences.
 */
export function meanPairwiseActionDistance(sequences: readonly (readonly string[])[]): number {
  if (sequences.length < 2) return 0;
  let sum = 0;
  let pairs = 0;
  for (let i = 0; i < sequences.length; i++) {
    for (let j = i + 1; j < sequences.length; j++) {
      const a = sequences[i]!;
      const b = sequences[j]!;
      const longer = Math.max(a.length, b.length);
      sum += longer === 0 ? 0 : levenshtein(a, b) / longer;
      pairs++;
    }
  }
  return sum / pairs;
}

function levenshtein(a: readonly string[], b: readonly string[]): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min(previous[j]! + 1, current[j - 1]! + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length]!;
}

/** Fraction of tasks whose selected patch resolved the task; null (nothing selected) counts as unresolved; 0 for no tasks. */
export function resolveRate(selected: readonly (boolean | null)[]): number {
  if (selected.length === 0) return 0;
  return selected.filter((s) => s === true).length / selected.length;
}
