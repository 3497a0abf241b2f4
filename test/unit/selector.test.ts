import { describe, expect, it } from 'vitest';
import { type SelectionCandidate, selectBestTrajectory } from '../../domain/selector';

const cand = (
  rolloutId: string,
  steps: number,
  over: Partial<Omit<SelectionCandidate, 'rolloutId' | 'steps'>> = {},
): SelectionCandidate => ({
  rolloutId,
  steps,
  finished: true,
  regressionFree: true,
  verifierP: 0.5,
  ...over,
});

const most = { eta: 0.01, prefer: 'most-steps' } as const;
const fewest = { eta: 0.01, prefer: 'fewest-steps' } as const;

describe('selectBestTrajectory', () => {
  // Each filter removes one candidate that the step heuristic would otherwise pick.
  const pool = [
    cand('unfinished', 50, { finished: false }),
    cand('regresses', 40, { regressionFree: false }),
    cand('unlikely', 30, { verifierP: 0.005 }),
    cand('short', 10),
    cand('long', 20, { verifierP: 0.2 }),
  ];

  it('applies finished, regression-free and verifier filters in order, then the most steps', () => {
    expect(selectBestTrajectory(pool, most)).toEqual({
      selected: 'long',
      survivors: { candidates: 5, finished: 4, regressionFree: 3, verifier: 2, final: 1 },
      fellBack: [],
    });
  });

  it('picks the fewest steps when asked', () => {
    expect(selectBestTrajectory(pool, fewest).selected).toBe('short');
  });

  it('keeps a verifier score equal to eta', () => {
    const selection = selectBestTrajectory([cand('at', 9, { verifierP: 0.01 }), cand('above', 1)], most);
    expect(selection.selected).toBe('at');
    expect(selection.survivors.verifier).toBe(2);
  });

  it('falls back to all candidates when none finished', () => {
    const selection = selectBestTrajectory(
      [cand('a', 3, { finished: false }), cand('b', 7, { finished: false, regressionFree: false })],
      most,
    );
    expect(selection).toEqual({
      selected: 'a',
      survivors: { candidates: 2, finished: 2, regressionFree: 1, verifier: 1, final: 1 },
      fellBack: ['finished'],
    });
  });

  it('falls back when no finished candidate is regression-free; unchecked (null) does not pass', () => {
    const selection = selectBestTrajectory(
      [
        cand('unfinished-clean', 90, { finished: false }),
        cand('unchecked', 5, { regressionFree: null }),
        cand('regresses', 8, { regressionFree: false }),
      ],
      most,
    );
    expect(selection).toEqual({
      selected: 'regresses',
      survivors: { candidates: 3, finished: 2, regressionFree: 2, verifier: 2, final: 1 },
      fellBack: ['regressionFree'],
    });
  });

  it('falls back when the verifier would remove everyone; a missing score does not pass', () => {
    const selection = selectBestTrajectory(
      [
        cand('low', 4, { verifierP: 0.001 }),
        cand('none', 6, { verifierP: null }),
        cand('dirty', 99, { regressionFree: false }),
      ],
      most,
    );
    expect(selection).toEqual({
      selected: 'none',
      survivors: { candidates: 3, finished: 3, regressionFree: 2, verifier: 2, final: 1 },
      fellBack: ['verifier'],
    });
  });

  it('records every filter that fell back', () => {
    const selection = selectBestTrajectory(
      [
        cand('a', 2, { finished: false, regressionFree: null, verifierP: null }),
        cand('b', 1, { finished: false, regressionFree: false, verifierP: 0 }),
      ],
      fewest,
    );
    expect(selection.selected).toBe('b');
    expect(selection.fellBack).toEqual(['finished', 'regressionFree', 'verifier']);
    expect(selection.survivors).toEqual({
      candidates: 2,
      finished: 2,
      regressionFree: 2,
      verifier: 2,
      final: 1,
    });
  });

  it('breaks step ties by the highest verifier score, then by input order', () => {
    const tiedScores = [
      cand('x', 5, { verifierP: 0.3 }),
      cand('y', 5, { verifierP: 0.8 }),
      cand('z', 5, { verifierP: 0.8 }),
    ];
    expect(selectBestTrajectory(tiedScores, most)).toMatchObject({ selected: 'y', survivors: { final: 3 } });
    expect(selectBestTrajectory([tiedScores[2]!, tiedScores[1]!, tiedScores[0]!], most).selected).toBe('z');
    const fewer = [cand('long', 9), cand('p', 2, { verifierP: 0.1 }), cand('q', 2, { verifierP: 0.4 })];
    expect(selectBestTrajectory(fewer, fewest)).toMatchObject({ selected: 'q', survivors: { final: 2 } });
  });

  it('ranks a missing verifier score below a score of 0 in the tie-break (after the verifier fell back)', () => {
    const selection = selectBestTrajectory(
      [cand('none', 3, { verifierP: null }), cand('zero', 3, { verifierP: 0 })],
      most,
    );
    expect(selection.fellBack).toEqual(['verifier']);
    expect(selection.selected).toBe('zero');
    const allMissing = [cand('first', 3, { verifierP: null }), cand('second', 3, { verifierP: null })];
    expect(selectBestTrajectory(allMissing, most).selected).toBe('first');
  });

  it('selects nothing from no candidates', () => {
    expect(selectBestTrajectory([], most)).toEqual({
      selected: null,
      survivors: { candidates: 0, finished: 0, regressionFree: 0, verifier: 0, final: 0 },
      fellBack: [],
    });
  });

  it('skips filters named in `skip` (ablations)', () => {
    const noVerifier = selectBestTrajectory(pool, { ...most, skip: ['verifier'] });
    expect(noVerifier.selected).toBe('unlikely');
    expect(noVerifier.survivors).toEqual({
      candidates: 5,
      finished: 4,
      regressionFree: 3,
      verifier: 3,
      final: 1,
    });
    expect(noVerifier.fellBack).toEqual([]);
    const noFinished = selectBestTrajectory(pool, { ...most, skip: ['finished'] });
    expect(noFinished.selected).toBe('unfinished');
    expect(noFinished.survivors).toEqual({
      candidates: 5,
      finished: 5,
      regressionFree: 4,
      verifier: 3,
      final: 1,
    });
  });

  it('rejects bad options and candidates, naming them', () => {
    expect(() => selectBestTrajectory(pool, { eta: 1.5, prefer: 'most-steps' })).toThrow(/eta must be/);
    expect(() => selectBestTrajectory(pool, { eta: 0.01, prefer: 'longest' as 'most-steps' })).toThrow(
      /prefer must be/,
    );
    expect(() => selectBestTrajectory([cand('a', -1)], most)).toThrow(/"a" has steps -1/);
    expect(() => selectBestTrajectory([cand('a', 1, { verifierP: Number.NaN })], most)).toThrow(
      /"a" has verifierP/,
    );
    expect(() => selectBestTrajectory([cand('a', 1), cand('a', 2)], most)).toThrow(
      /"a" appears more than once/,
    );
  });
});
