import { describe, expect, it } from 'vitest';
import {
  distinctPatches,
  meanPairwiseActionDistance,
  meanPassAtK,
  oracleBestOfN,
  passAtK,
  resolveRate,
  ttsCurve,
} from '../../domain/metrics';

/** Fraction of k-subsets of n samples (the first c correct) holding a correct one, by enumeration. */
function bruteForcePassAtK(n: number, c: number, k: number): number {
  let hits = 0;
  let total = 0;
  const walk = (start: number, chosen: number[]) => {
    if (chosen.length === k) {
      total++;
      if (chosen.some((i) => i < c)) hits++;
      return;
    }
    for (let i = start; i < n; i++) walk(i + 1, [...chosen, i]);
  };
  walk(0, []);
  return hits / total;
}

function binomial(n: number, k: number): bigint {
  let value = 1n;
  for (let i = 1; i <= k; i++) value = (value * BigInt(n - k + i)) / BigInt(i);
  return value;
}

describe('passAtK', () => {
  it('matches hand-computed values', () => {
    expect(passAtK(4, 1, 2)).toBeCloseTo(1 - 3 / 6, 12); // 1 − C(3,2)/C(4,2)
    expect(passAtK(5, 2, 2)).toBeCloseTo(1 - 3 / 10, 12); // 1 − C(3,2)/C(5,2)
    expect(passAtK(10, 3, 1)).toBeCloseTo(0.3, 12);
  });

  it('matches enumeration of every k-subset', () => {
    for (let n = 1; n <= 8; n++) {
      for (let c = 0; c <= n; c++) {
        for (let k = 1; k <= n; k++) {
          expect(passAtK(n, c, k), `n=${n} c=${c} k=${k}`).toBeCloseTo(bruteForcePassAtK(n, c, k), 12);
        }
      }
    }
  });

  it('handles the edges: none correct, all correct, k = n', () => {
    expect(passAtK(16, 0, 16)).toBe(0);
    expect(passAtK(16, 0, 1)).toBe(0);
    expect(passAtK(16, 16, 1)).toBe(1);
    expect(passAtK(16, 1, 16)).toBe(1);
    expect(passAtK(16, 15, 2)).toBe(1);
  });

  it('stays accurate where the binomials are huge', () => {
    // 1 − C(990,100)/C(1000,100), with exact integers scaled to 15 digits.
    const scale = 10n ** 15n;
    const expected = 1 - Number((binomial(990, 100) * scale) / binomial(1000, 100)) / 1e15;
    expect(passAtK(1000, 10, 100)).toBeCloseTo(expected, 12);
    expect(passAtK(200, 1, 1)).toBeCloseTo(0.005, 15);
  });

  it('rejects bad arguments, naming them', () => {
    expect(() => passAtK(3, 1, 4)).toThrow(/k must be .* \[1, n=3\], got 4/);
    expect(() => passAtK(3, 1, 0)).toThrow(/k must be/);
    expect(() => passAtK(3, 4, 1)).toThrow(/c must be/);
    expect(() => passAtK(3, -1, 1)).toThrow(/c must be/);
    expect(() => passAtK(0, 0, 1)).toThrow(/n must be/);
    expect(() => passAtK(2.5, 1, 1)).toThrow(/n must be/);
  });
});

describe('meanPassAtK', () => {
  it('averages over tasks', () => {
    expect(
      meanPassAtK(
        [
          { n: 4, c: 1 },
          { n: 5, c: 2 },
        ],
        2,
      ),
    ).toBeCloseTo((0.5 + 0.7) / 2, 12);
    expect(meanPassAtK([], 1)).toBe(0);
  });

  it('names the task whose counts are bad', () => {
    expect(() =>
      meanPassAtK(
        [
          { n: 4, c: 1 },
          { n: 2, c: 0 },
        ],
        3,
      ),
    ).toThrow(/task 1: passAtK: k must be/);
  });
});

describe('oracleBestOfN and resolveRate', () => {
  it('count a task as solved when any rollout resolved it', () => {
    expect(
      oracleBestOfN([{ resolved: [false, true] }, { resolved: [false, false] }, { resolved: [] }]),
    ).toBeCloseTo(1 / 3, 12);
    expect(oracleBestOfN([])).toBe(0);
  });

  it('count no selection as unresolved', () => {
    expect(resolveRate([true, false, null, true])).toBe(0.5);
    expect(resolveRate([null, null])).toBe(0);
    expect(resolveRate([])).toBe(0);
  });
});

type Candidate = { id: string; resolved: boolean };
const R = (id: string): Candidate => ({ id, resolved: true });
const U = (id: string): Candidate => ({ id, resolved: false });
const first = (subset: readonly Candidate[]) => subset[0] ?? null;

describe('ttsCurve', () => {
  it('gives the hand-computed expected resolve rate of "take the first" on every subset size', () => {
    // Task A [R,U,U]: m=1 → 1/3; m=2 → subsets {0,1},{0,2},{1,2} → first resolved in 2 of 3; m=3 → 1.
    // Task B [U,R]:   m=1 → 1/2; m=2 → 0 (first is U); m=3 → offers both → 0.
    // Task C []:      always unresolved.
    const curve = ttsCurve([[R('a0'), U('a1'), U('a2')], [U('b0'), R('b1')], []], first);
    expect(curve.map((p) => p.n)).toEqual([1, 2, 3]);
    expect(curve.every((p) => p.exact)).toBe(true);
    expect(curve[0]!.resolveRate).toBeCloseTo((1 / 3 + 1 / 2 + 0) / 3, 12);
    expect(curve[1]!.resolveRate).toBeCloseTo((2 / 3 + 0 + 0) / 3, 12);
    expect(curve[2]!.resolveRate).toBeCloseTo((1 + 0 + 0) / 3, 12);
  });

  it('counts a null selection as unresolved and gives an empty curve for no candidates', () => {
    const curve = ttsCurve([[R('a0'), R('a1')]], (subset) => (subset.length === 2 ? subset[1]! : null));
    expect(curve).toEqual([
      { n: 1, resolveRate: 0, exact: true },
      { n: 2, resolveRate: 1, exact: true },
    ]);
    expect(ttsCurve([], first)).toEqual([]);
    expect(ttsCurve([[]], first)).toEqual([]);
  });

  it('samples when enumeration is too big, agreeing with the exact values and deterministic for a seed', () => {
    const tasks = [
      Array.from({ length: 12 }, (_, i) => (i % 4 === 1 ? R(`a${i}`) : U(`a${i}`))),
      Array.from({ length: 10 }, (_, i) => (i >= 7 ? R(`b${i}`) : U(`b${i}`))),
    ];
    // Takes the last candidate of the subset: sensitive to the order the subset keeps.
    const lastOfSubset = (subset: readonly Candidate[]) => subset[subset.length - 1] ?? null;
    const exact = ttsCurve(tasks, lastOfSubset);
    const sampled = ttsCurve(tasks, lastOfSubset, { exactLimit: 1, samples: 20_000, seed: 7 });
    expect(exact.every((p) => p.exact)).toBe(true);
    // C(12, 12) = 1 is still enumerated; every other size of task A is sampled.
    expect(sampled.slice(0, 11).every((p) => !p.exact)).toBe(true);
    expect(sampled[11]!.exact).toBe(true);
    for (let m = 0; m < exact.length; m++) {
      expect(Math.abs(sampled[m]!.resolveRate - exact[m]!.resolveRate), `n=${m + 1}`).toBeLessThan(0.02);
    }
    // Task B at m=1: 3 of 10 resolved → 0.3; at m=10 the last is b9 (R) → 1. Task A at m=12: a11 is U → 0.
    expect(exact[0]!.resolveRate).toBeCloseTo((3 / 12 + 3 / 10) / 2, 12);
    expect(exact[11]!.resolveRate).toBeCloseTo((0 + 1) / 2, 12);
    expect(ttsCurve(tasks, lastOfSubset, { exactLimit: 1, samples: 500, seed: 7 })).toEqual(
      ttsCurve(tasks, lastOfSubset, { exactLimit: 1, samples: 500, seed: 7 }),
    );
  });

  it('rejects bad options', () => {
    expect(() => ttsCurve([[R('a')]], first, { samples: 0 })).toThrow(/samples must be/);
    expect(() => ttsCurve([[R('a')]], first, { exactLimit: 0.5 })).toThrow(/exactLimit must be/);
  });
});

describe('distinctPatches', () => {
  it('ignores trailing whitespace and trailing blank lines, and does not count empty patches', () => {
    const p = 'diff --git a/x b/x\n+fix\n';
    expect(distinctPatches([p, 'diff --git a/x b/x  \n+fix\t\n\n', 'diff --git a/x b/x\r\n+fix\r\n'])).toBe(
      1,
    );
    expect(distinctPatches([p, 'diff --git a/x b/x\n+ fix\n', '', ' \n\n'])).toBe(2);
    expect(distinctPatches(['', ''])).toBe(0);
  });
});

describe('meanPairwiseActionDistance', () => {
  it('averages the normalised token edit distance over all pairs', () => {
    // d(abc, ac) = 1/3; d(abc, []) = 3/3; d(ac, []) = 2/2.
    expect(meanPairwiseActionDistance([['a', 'b', 'c'], ['a', 'c'], []])).toBeCloseTo(
      (1 / 3 + 1 + 1) / 3,
      12,
    );
    // kitten → sitting: 3 edits over 7 tokens.
    expect(meanPairwiseActionDistance([[...'kitten'], [...'sitting']])).toBeCloseTo(3 / 7, 12);
    expect(
      meanPairwiseActionDistance([
        ['view', 'edit'],
        ['view', 'edit'],
      ]),
    ).toBe(0);
  });

  it('is 0 for fewer than two sequences or two empty ones', () => {
    expect(meanPairwiseActionDistance([])).toBe(0);
    expect(meanPairwiseActionDistance([['a']])).toBe(0);
    expect(meanPairwiseActionDistance([[], []])).toBe(0);
  });
});
