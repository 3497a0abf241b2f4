/**
 * The hybrid best-trajectory selector (DESIGN §7, paper §3.4 and appendix D.4). Filters, in order, each
 * falling back to the previous set when it would leave nothing:
 * 1. finished: `finished === true` (submitted, not truncated);
 * 2. regression-free: `regressionFree === true` (`null`, not checked, fails the filter; the fallback still
 *    applies, so a pool where nothing was checked keeps the finished set);
 * 3. verifier: `verifierP ≥ eta` (`null`, no score, fails the filter; same fallback);
 * 4. pick the most (or, with `prefer: 'fewest-steps'`, the fewest) environment steps.
 * Ties at the best step count go to the highest `verifierP` (a missing score ranks below every score),
 * then to the earliest candidate in input order. The verifier is only a filter and a tie-break, never a
 * ranking (paper: "we do not rank by p_ϕ").
 */

export interface SelectionCandidate {
  rolloutId: string;
  /** exitReason === 'submitted' */
  finished: boolean;
  /** null = not checked: fails the filter, but the fallback applies. */
  regressionFree: boolean | null;
  /** null = no score: fails the filter, but the fallback applies. */
  verifierP: number | null;
  steps: number;
}

export type SelectorFilter = 'finished' | 'regressionFree' | 'verifier';

export interface SelectorOptions {
  eta: number;
  prefer: 'most-steps' | 'fewest-steps';
  /** Filters to skip (for the ablation of each component, paper Figure 3); a skipped filter keeps its input set. */
  skip?: readonly SelectorFilter[];
}

export interface Selection {
  /** null only when there are no candidates. */
  selected: string | null;
  /**
   * Size of the set after each filter (after fallback). `final` is the number of candidates tied at the best
   * step count, before the tie-break (1 when the step count alone decides).
   */
  survivors: {
    candidates: number;
    finished: number;
    regressionFree: number;
    verifier: number;
    final: number;
  };
  /** Which filters fell back because they would have left nothing. */
  fellBack: SelectorFilter[];
}

export function selectBestTrajectory(
  candidates: readonly SelectionCandidate[],
  options: SelectorOptions,
): Selection {
  validate(candidates, options);
  const skip = new Set(options.skip ?? []);
  const fellBack: SelectorFilter[] = [];
  const filter = (
    name: SelectorFilter,
    set: readonly SelectionCandidate[],
    keep: (c: SelectionCandidate) => boolean,
  ): readonly SelectionCandidate[] => {
    if (skip.has(name) || set.length === 0) return set;
    const kept = set.filter(keep);
    if (kept.length > 0) return kept;
    fellBack.push(name);
    return set;
  };

  const finished = filter('finished', candidates, (c) => c.finished);
  const regressionFree = filter('regressionFree', finished, (c) => c.regressionFree === true);
  const verified = filter(
    'verifier',
    regressionFree,
    (c) => c.verifierP !== null && c.verifierP >= options.eta,
  );

  const stepScore = (c: SelectionCandidate) => (options.prefer === 'most-steps' ? c.steps : -c.steps);
  const bestSteps = Math.max(...verified.map(stepScore));
  const tied = verified.filter((c) => stepScore(c) === bestSteps);
  let selected: SelectionCandidate | null = null;
  for (const c of tied) {
    // Strictly greater, so the earliest in input order wins among equal scores.
    if (selected === null || (c.verifierP ?? -1) > (selected.verifierP ?? -1)) selected = c;
  }

  return {
    selected: selected?.rolloutId ?? null,
    survivors: {
      candidates: candidates.length,
      finished: finished.length,
      regressionFree: regressionFree.length,
      verifier: verified.length,
      final: tied.length,
    },
    fellBack,
  };
}

function validate(candidates: readonly SelectionCandidate[], options: SelectorOptions): void {
  if (!Number.isFinite(options.eta) || options.eta < 0 || options.eta > 1) {
    throw new Error(`selector: eta must be a number in [0, 1], got ${options.eta}`);
  }
  if (options.prefer !== 'most-steps' && options.prefer !== 'fewest-steps') {
    throw new Error(`selector: prefer must be 'most-steps' or 'fewest-steps', got ${String(options.prefer)}`);
  }
  const seen = new Set<string>();
  for (const c of candidates) {
    if (seen.has(c.rolloutId)) throw new Error(`selector: rolloutId "${c.rolloutId}" appears more than once`);
    seen.add(c.rolloutId);
    if (!Number.isInteger(c.steps) || c.steps < 0) {
      throw new Error(`selector: candidate "${c.rolloutId}" has steps ${c.steps}; expected an integer ≥ 0`);
    }
    if (c.verifierP !== null && !(c.verifierP >= 0 && c.verifierP <= 1)) {
      throw new Error(
        `selector: candidate "${c.rolloutId}" has verifierP ${c.verifierP}; expected a number in [0, 1] or null`,
      );
    }
  }
}
