import { type ApplyAttempt, type RevertedFile, SUMMARY_SAMPLE_SIZE } from './grading';
import type { TestStatus, TestStatusMap } from './testLog';
import type { RunnerHookFlag } from './testMachinery';

/**
 * The selector's regression check (paper §3.4, D.4): the repository's own tests that passed at the base
 * commit must still pass with the model's patch. Hidden tests (the test patch, FAIL_TO_PASS, PASS_TO_PASS)
 * play no part: both runs are the instance's test command over the repository's own tests.
 */

/** A test that passed at the base commit and does not with the patch: its status then, or `MISSING`. */
export interface BrokenTest {
  test: string;
  status: TestStatus | 'MISSING';
}

export interface RegressionComparison {
  /** Tests PASSED at the base commit, sorted. */
  passedAtBase: string[];
  /** How many of them are PASSED with the patch. */
  stillPassing: number;
  /** The others, in the order of {@link passedAtBase}. */
  broken: BrokenTest[];
}

/**
 * Compares the two runs. Both run in the same sandbox, so a baseline test still passes only when it is
 * PASSED again: one that the patch makes skip, xfail or vanish (absent from the log) counts as broken, since a
 * patch could otherwise hide a test it breaks.
 */
export function compareTestRuns(atBase: TestStatusMap, withPatch: TestStatusMap): RegressionComparison {
  const passedAtBase = Object.keys(atBase)
    .filter((test) => atBase[test] === 'PASSED')
    .sort();
  const broken: BrokenTest[] = [];
  for (const test of passedAtBase) {
    const status = Object.hasOwn(withPatch, test) ? withPatch[test]! : 'MISSING';
    if (status !== 'PASSED') broken.push({ test, status });
  }
  return { passedAtBase, stillPassing: passedAtBase.length - broken.length, broken };
}

/** `2 of 468 tests that passed at the base commit no longer pass (first: a FAILED, b MISSING)`. */
export function describeRegressions(comparison: RegressionComparison): string {
  const first = comparison.broken
    .slice(0, SUMMARY_SAMPLE_SIZE)
    .map((b) => `${b.test} ${b.status}`)
    .join(', ');
  return (
    `${comparison.broken.length} of ${comparison.passedAtBase.length} tests that passed at the base commit ` +
    `no longer pass (${comparison.broken.length > SUMMARY_SAMPLE_SIZE ? 'first: ' : ''}${first})`
  );
}

/** One run of an instance's test command. */
export interface TestCommandRun {
  exitCode: number | null;
  timedOut: boolean;
  /** Artifact id of the log (stdout, then stderr). */
  logId: string;
  /** Per-test statuses parsed from the log; empty when the run timed out. */
  statuses: TestStatusMap;
  durationMs: number;
}

/** Everything about one regression check, stored as an artifact; the workflow sees {@link RegressionCheckResult}. */
export interface RegressionReport {
  instanceId: string;
  /** Artifact id of the model's patch. */
  patchId: string;
  regressionFree: boolean;
  /** Why it is not regression-free: tests timed out, the patch did not apply, or which tests broke. */
  reason?: string;
  testCommand: string;
  /** The tests at the base commit; null when they were not run. */
  atBase: TestCommandRun | null;
  /** Whether the patch applied (an empty patch applies trivially). */
  applied: boolean;
  appliedWith: string | null;
  applyAttempts: ApplyAttempt[];
  /** Test machinery the patch changed, put back as at the base commit before the tests ran again. */
  revertedFiles: RevertedFile[];
  /** Added lines outside the test machinery that reach into the test runner (flagged, not reverted). */
  runnerHooks: RunnerHookFlag[];
  /** The tests with the patch; null when they were not run. */
  withPatch: TestCommandRun | null;
  /** Null when the tests did not run to the end both times. */
  comparison: RegressionComparison | null;
  durationMs: number;
  durations: { baseTestMs: number; applyMs: number; patchedTestMs: number };
}

/** The small result the selector sees. */
export interface RegressionCheckResult {
  instanceId: string;
  regressionFree: boolean;
  applied: boolean;
  /** Tests PASSED at the base commit. */
  passedAtBase: number;
  /** How many of those are PASSED with the patch. */
  stillPassing: number;
  /** The first few tests that broke (at most {@link SUMMARY_SAMPLE_SIZE}). */
  broken: string[];
  reportId: string;
  reason?: string;
}

/**
 * The verdict and its reason from what ran: the first thing that stopped the check (tests timing out at
 * the base commit, the patch not applying, tests timing out with the patch), else the comparison.
 */
export function judgeRegressions(
  runs: {
    atBase: TestCommandRun | null;
    applied: boolean;
    /** Why the patch did not apply. */
    applyReason?: string;
    withPatch: TestCommandRun | null;
  },
  testTimeoutSec: number,
): { regressionFree: boolean; reason?: string; comparison: RegressionComparison | null } {
  if (runs.atBase === null || runs.atBase.timedOut) {
    return {
      regressionFree: false,
      reason: `tests timed out after ${testTimeoutSec}s at the base commit`,
      comparison: null,
    };
  }
  if (!runs.applied) {
    return { regressionFree: false, reason: runs.applyReason ?? 'patch did not apply', comparison: null };
  }
  if (runs.withPatch === null || runs.withPatch.timedOut) {
    return {
      regressionFree: false,
      reason: `tests timed out after ${testTimeoutSec}s with the patch`,
      comparison: null,
    };
  }
  const comparison = compareTestRuns(runs.atBase.statuses, runs.withPatch.statuses);
  if (comparison.broken.length === 0) return { regressionFree: true, comparison };
  return { regressionFree: false, reason: describeRegressions(comparison), comparison };
}

/** The small result from the full report. */
export function regressionResultOf(report: RegressionReport, reportId: string): RegressionCheckResult {
  const result: RegressionCheckResult = {
    instanceId: report.instanceId,
    regressionFree: report.regressionFree,
    applied: report.applied,
    passedAtBase: Object.values(report.atBase?.statuses ?? {}).filter((s) => s === 'PASSED').length,
    stillPassing: report.comparison?.stillPassing ?? 0,
    broken: (report.comparison?.broken ?? []).slice(0, SUMMARY_SAMPLE_SIZE).map((b) => b.test),
    reportId,
  };
  if (report.reason !== undefined) result.reason = report.reason;
  return result;
}
