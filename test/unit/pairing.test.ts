import { describe, expect, it } from 'vitest';
import { buildPreferencePairs, type PairCandidate } from '../../domain/pairing';
import { seededShuffle } from '../../domain/seededShuffle';

const cand = (
  rolloutId: string,
  taskId: string,
  resolved: boolean | null,
  over: Partial<Omit<PairCandidate, 'rolloutId' | 'taskId' | 'resolved'>> = {},
): PairCandidate => ({
  rolloutId,
  taskId,
  resolved,
  prefixKey: `${taskId}/prompt`,
  contentKey: rolloutId,
  exitReason: 'submitted',
  flagged: false,
  source: 'student',
  ...over,
});

const opts = { maxPairsPerTask: 10, seed: 1 };
const pairKeys = (pairs: readonly { chosen: string; rejected: string }[]) =>
  pairs.map((p) => `${p.chosen}>${p.rejected}`).sort();

describe('buildPreferencePairs', () => {
  it('excludes errored, failed, flagged, ungraded and duplicate rollouts, first reason winning, and counts them', () => {
    const result = buildPreferencePairs(
      [
        cand('t1-llm', 't1', false, { exitReason: 'llm_error' }),
        cand('t1-sbx', 't1', true, { exitReason: 'sandbox_error', flagged: true }),
        cand('t1-fail', 't1', null, { exitReason: 'failed' }),
        cand('t1-flag', 't1', true, { flagged: true }),
        cand('t1-ungraded', 't1', null),
        cand('t1-a', 't1', true, { contentKey: 'same' }),
        cand('t1-b', 't1', true, { contentKey: 'same' }),
        cand('t1-trunc', 't1', false, { exitReason: 'step_limit' }),
      ],
      opts,
    );
    expect(result.excluded).toEqual([
      { rolloutId: 't1-b', reason: 'duplicate' },
      { rolloutId: 't1-fail', reason: 'failed' },
      { rolloutId: 't1-flag', reason: 'flagged' },
      { rolloutId: 't1-llm', reason: 'llm_error' },
      { rolloutId: 't1-sbx', reason: 'sandbox_error' },
      { rolloutId: 't1-ungraded', reason: 'ungraded' },
    ]);
    expect(result.stats.excluded).toEqual({
      duplicate: 1,
      failed: 1,
      flagged: 1,
      llm_error: 1,
      sandbox_error: 1,
      ungraded: 1,
    });
    expect(result.stats.candidates).toBe(8);
    expect(result.stats.usable).toBe(2);
    // Truncated trajectories are graded examples like any other.
    expect(result.pairs).toEqual([{ id: 't1#0', taskId: 't1', chosen: 't1-a', rejected: 't1-trunc' }]);
  });

  it('keeps one of identical trajectories (the smallest rolloutId), only within the same task and prefix', () => {
    const result = buildPreferencePairs(
      [
        cand('b', 't1', false, { contentKey: 'x' }),
        cand('a', 't1', false, { contentKey: 'x' }),
        cand('c', 't1', false, { contentKey: 'x', prefixKey: 'other' }),
        cand('d', 't2', false, { contentKey: 'x', prefixKey: 't1/prompt' }),
      ],
      opts,
    );
    expect(result.excluded).toEqual([{ rolloutId: 'b', reason: 'duplicate' }]);
    expect(result.kto.map((k) => k.rolloutId)).toEqual(['a', 'c', 'd']);
  });

  it('pairs every resolved with every unresolved trajectory when the cap allows', () => {
    const task = [
      cand('r1', 't', true),
      cand('r2', 't', true),
      cand('u1', 't', false),
      cand('u2', 't', false),
      cand('u3', 't', false),
    ];
    const result = buildPreferencePairs(task, { maxPairsPerTask: 6, seed: 3 });
    expect(pairKeys(result.pairs)).toEqual(['r1>u1', 'r1>u2', 'r1>u3', 'r2>u1', 'r2>u2', 'r2>u3']);
    expect(result.pairs.map((p) => p.id)).toEqual(['t#0', 't#1', 't#2', 't#3', 't#4', 't#5']);
    expect(buildPreferencePairs(task, { maxPairsPerTask: 100, seed: 3 }).pairs).toHaveLength(6);
  });

  it('caps the pairs per task and spreads them over distinct trajectories, for every seed', () => {
    const task = [
      cand('r1', 't', true),
      cand('r2', 't', true),
      cand('u1', 't', false),
      cand('u2', 't', false),
      cand('u3', 't', false),
    ];
    for (let seed = 0; seed < 25; seed++) {
      const two = buildPreferencePairs(task, { maxPairsPerTask: 2, seed }).pairs;
      expect(two).toHaveLength(2);
      expect(new Set(two.map((p) => p.chosen)).size, `seed ${seed}`).toBe(2);
      expect(new Set(two.map((p) => p.rejected)).size, `seed ${seed}`).toBe(2);
      const three = buildPreferencePairs(task, { maxPairsPerTask: 3, seed }).pairs;
      expect(new Set(three.map((p) => p.rejected)), `seed ${seed}`).toEqual(new Set(['u1', 'u2', 'u3']));
      expect(new Set(three.map((p) => p.chosen)), `seed ${seed}`).toEqual(new Set(['r1', 'r2']));
    }
    const none = buildPreferencePairs(task, { maxPairsPerTask: 0, seed: 0 });
    expect(none.pairs).toEqual([]);
    expect(none.stats.tasksCovered).toBe(0);
    expect(none.kto).toHaveLength(5);
  });

  it('uses the seed: different seeds pick different pairs under a cap', () => {
    const task = [
      cand('r1', 't', true),
      cand('r2', 't', true),
      cand('u1', 't', false),
      cand('u2', 't', false),
      cand('u3', 't', false),
    ];
    const picks = new Set<string>();
    for (let seed = 0; seed < 25; seed++)
      picks.add(pairKeys(buildPreferencePairs(task, { maxPairsPerTask: 1, seed }).pairs)[0]!);
    expect(picks.size).toBeGreaterThan(1);
  });

  it('never pairs across prefix groups', () => {
    const result = buildPreferencePairs(
      [
        cand('r1', 't1', true, { prefixKey: 'p1' }),
        cand('u1', 't1', false, { prefixKey: 'p1' }),
        cand('u2', 't1', false, { prefixKey: 'p2' }),
        cand('r3', 't1', true, { prefixKey: 'p3' }),
        cand('r9', 't2', true, { prefixKey: 'q1' }),
        cand('u9', 't2', false, { prefixKey: 'q2' }),
      ],
      opts,
    );
    expect(pairKeys(result.pairs)).toEqual(['r1>u1']);
    expect(result.stats.tasksCovered).toBe(1);
    expect(result.stats.tasksWithoutSharedPrefix).toEqual(['t2']);
    expect(result.stats.tasksWithoutResolved).toEqual([]);
    expect(result.stats.tasksWithoutUnresolved).toEqual([]);
  });

  it('gives the same result for any input order, and a task’s pairs do not depend on other tasks', () => {
    const candidates = [
      ...['a', 'b', 'c', 'd'].map((x, i) =>
        cand(`t1-${x}`, 't1', i % 2 === 0, { source: i < 2 ? 'teacher' : 'student' }),
      ),
      ...['a', 'b', 'c', 'd', 'e', 'f'].map((x, i) => cand(`t2-${x}`, 't2', i < 2)),
      cand('t3-a', 't3', false, { contentKey: 'k' }),
      cand('t3-b', 't3', false, { contentKey: 'k' }),
    ];
    const options = { maxPairsPerTask: 3, seed: 42 };
    const reference = buildPreferencePairs(candidates, options);
    expect(buildPreferencePairs(candidates, options)).toEqual(reference);
    expect(buildPreferencePairs([...candidates].reverse(), options)).toEqual(reference);
    for (let s = 0; s < 5; s++)
      expect(buildPreferencePairs(seededShuffle(candidates, s), options)).toEqual(reference);

    const t2Only = buildPreferencePairs(
      candidates.filter((c) => c.taskId === 't2'),
      options,
    );
    expect(t2Only.pairs).toEqual(reference.pairs.filter((p) => p.taskId === 't2'));
  });

  it('reports KTO labels, balance, coverage, missing sides and pair sources', () => {
    const result = buildPreferencePairs(
      [
        cand('b-u1', 'B', false),
        cand('a-r1', 'A', true, { source: 'teacher' }),
        cand('a-u1', 'A', false),
        cand('a-u2', 'A', false, { source: 'teacher' }),
        cand('c-r1', 'C', true),
        cand('d-x', 'D', false, { exitReason: 'llm_error' }),
        cand('b-u2', 'B', false, { exitReason: 'token_limit' }),
      ],
      opts,
    );
    // Task order: first appearance in rolloutId order (a-…, b-…, c-…, d-…).
    expect(result.kto).toEqual([
      { rolloutId: 'a-r1', taskId: 'A', label: true },
      { rolloutId: 'a-u1', taskId: 'A', label: false },
      { rolloutId: 'a-u2', taskId: 'A', label: false },
      { rolloutId: 'b-u1', taskId: 'B', label: false },
      { rolloutId: 'b-u2', taskId: 'B', label: false },
      { rolloutId: 'c-r1', taskId: 'C', label: true },
    ]);
    expect(pairKeys(result.pairs)).toEqual(['a-r1>a-u1', 'a-r1>a-u2']);
    expect(result.stats).toEqual({
      candidates: 7,
      usable: 6,
      excluded: { llm_error: 1 },
      pairs: 2,
      tasks: 4,
      tasksCovered: 1,
      tasksWithoutResolved: ['B', 'D'],
      tasksWithoutUnresolved: ['C', 'D'],
      tasksWithoutSharedPrefix: [],
      resolvedExamples: 2,
      unresolvedExamples: 4,
      examplesBySource: { teacher: { resolved: 1, unresolved: 1 }, student: { resolved: 1, unresolved: 3 } },
      pairSources: { 'teacher>student': 1, 'teacher>teacher': 1 },
    });
  });

  it('rejects bad input, naming it', () => {
    expect(() => buildPreferencePairs([cand('x', 't', true), cand('x', 't', false)], opts)).toThrow(
      /rolloutId "x" appears more than once/,
    );
    expect(() => buildPreferencePairs([cand('x', 't', true, { exitReason: 'timeout' })], opts)).toThrow(
      /"x" has unknown exitReason "timeout"/,
    );
    expect(() => buildPreferencePairs([], { maxPairsPerTask: -1, seed: 0 })).toThrow(/maxPairsPerTask/);
    expect(() => buildPreferencePairs([], { maxPairsPerTask: 1, seed: 0.5 })).toThrow(/seed/);
  });
});
