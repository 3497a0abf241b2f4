import type { Resolution } from './resolution';
import type { TestStatus, TestStatusMap } from './testLog';
import type { RunnerHookFlag } from './testMachinery';

/** What is graded: the instance's gold patch, the empty patch, or a model's patch stored as an artifact. */
export type PatchChoice = { kind: 'gold' } | { kind: 'empty' } | { kind: 'model'; patchId: string };

/**
 * Ways to apply a model patch, strictest first (as SWE-bench's harness does). The first that exits 0
 * wins and is recorded in the report. Each exits non-zero unless every hunk applied, so a patch that
 * applies only in part fails. `patch` runs with `--forward`: on its own (`--batch`) it would "assume -R"
 * for a patch that looks reversed and apply it backwards, giving credit for a diff that undoes a fix.
 */
export const PATCH_APPLY_METHODS = [
  { name: 'git apply', command: (file: string) => `git apply --verbose ${file}` },
  { name: 'git apply --reject', command: (file: string) => `git apply --verbose --reject ${file}` },
  {
    name: 'patch --fuzz=5',
    command: (file: string) => `patch --batch --forward --fuzz=5 -p1 -i ${file}`,
  },
] as const;

/**
 * Run when no method applied a patch: exits 0 when the patch applies backwards (it undoes what the code
 * already has, e.g. a fix diff reversed). Dry runs only; `--forward` keeps `patch -R` from flipping back.
 */
export const REVERSE_APPLY_CHECK = (file: string) =>
  `git apply --reverse --check ${file} 2>/dev/null || patch --batch --forward --reverse --dry-run --fuzz=5 -p1 -i ${file} >/dev/null 2>&1`;

export const PATCH_APPLIES_ONLY_IN_REVERSE =
  'patch applies only in reverse (it undoes changes the code already has)';

/**
 * Why a patch did not apply, from the apply attempts: `git apply --reject` applies the hunks that fit and
 * says so, which tells a patch that applies in part from one that does not apply at all.
 */
export function whyPatchDidNotApply(attempts: readonly ApplyAttempt[], appliesInReverse: boolean): string {
  if (appliesInReverse) return PATCH_APPLIES_ONLY_IN_REVERSE;
  const reject = attempts.find((a) => a.method === 'git apply --reject');
  const applied = reject ? (reject.output.match(/^Hunk #\d+ applied cleanly\.$/gm) ?? []).length : 0;
  const rejected = reject ? (reject.output.match(/^Rejected hunk #\d+\.$/gm) ?? []).length : 0;
  if (applied > 0 && rejected > 0) {
    return `patch applies only in part (${rejected} of ${applied + rejected} hunks do not apply)`;
  }
  return 'patch did not apply';
}

/** A test of FAIL_TO_PASS or PASS_TO_PASS that did not pass. */
export interface FailingTest {
  test: string;
  list: 'FAIL_TO_PASS' | 'PASS_TO_PASS';
  status: TestStatus | 'MISSING';
}

/** A count and the first few of a list, so a summary stays small however long the list is. */
export interface Sample<T> {
  count: number;
  first: T[];
}

export const SUMMARY_SAMPLE_SIZE = 5;

export function sampleOf<T>(items: readonly T[], size = SUMMARY_SAMPLE_SIZE): Sample<T> {
  return { count: items.length, first: items.slice(0, size) };
}

/** The tests that kept a grading from resolving, FAIL_TO_PASS first. */
export function failingTestsOf(resolution: Resolution): FailingTest[] {
  return [
    ...resolution.FAIL_TO_PASS.failure.map((f) => ({ ...f, list: 'FAIL_TO_PASS' as const })),
    ...resolution.PASS_TO_PASS.failure.map((f) => ({ ...f, list: 'PASS_TO_PASS' as const })),
  ];
}

/** `2 of 9 FAIL_TO_PASS and 1 of 447 PASS_TO_PASS tests did not pass`, leaving out a list with none. */
export function describeFailingTests(resolution: Resolution): string {
  const part = (list: 'FAIL_TO_PASS' | 'PASS_TO_PASS') => {
    const outcome = resolution[list];
    const total = outcome.success.length + outcome.failure.length;
    return outcome.failure.length > 0 ? `${outcome.failure.length} of ${total} ${list}` : null;
  };
  const parts = [part('FAIL_TO_PASS'), part('PASS_TO_PASS')].filter((p) => p !== null);
  return `${parts.join(' and ')} tests did not pass`;
}

/** A file of the test machinery that the patch changed, put back as at the base commit before the tests ran. */
export interface RevertedFile {
  path: string;
  /** `restored` from the base commit, or `removed` because the patch added it. */
  action: 'restored' | 'removed';
}

export interface ApplyAttempt {
  method: string;
  exitCode: number | null;
  output: string;
}

export interface GradeSummary {
  instanceId: string;
  patch: PatchChoice['kind'];
  resolved: boolean;
  /**
   * Why it is unresolved: the patch did not apply (or only in reverse or in part), the tests timed out,
   * or which tests did not pass.
   */
  reason?: string;
  /** Apply method that worked, or null for the empty patch / when none did. */
  appliedWith: string | null;
  reportId: string;
  /** Where the report ({@link GradeReport}) lies on the grading worker's disk. */
  reportPath?: string;
  durationMs: number;
  /** FAIL_TO_PASS / PASS_TO_PASS tests that did not pass (when the tests ran and some did not). */
  failingTests?: Sample<FailingTest>;
  /** Test machinery the patch changed, reverted before the tests ran (when there was any). */
  revertedFiles?: Sample<string>;
  /**
   * Added lines that reach into the test runner from outside the test machinery (`file:line rule`).
   * They ran with the tests: a later stage should not learn from a trajectory flagged here.
   */
  runnerHooks?: Sample<string>;
}

/** Everything about one grading, stored as an artifact; the workflow only sees {@link GradeSummary}. */
export interface GradeReport
  extends Omit<GradeSummary, 'reportId' | 'reportPath' | 'failingTests' | 'revertedFiles' | 'runnerHooks'> {
  applyAttempts: ApplyAttempt[];
  /** Test machinery the patch changed, put back before the tests ran. */
  revertedFiles: RevertedFile[];
  /** Added lines outside the test machinery that reach into the test runner (not reverted). */
  runnerHooks: RunnerHookFlag[];
  testPatchApplied: boolean;
  testCommand: string;
  testExitCode: number | null;
  testTimedOut: boolean;
  testLogId: string | null;
  statuses: TestStatusMap;
  resolution: Resolution | null;
  durations: { setupMs: number; applyMs: number; testMs: number };
}

/** The small result the workflow sees, from the full report. */
export function summaryOf(report: GradeReport, reportId: string, reportPath: string): GradeSummary {
  const summary: GradeSummary = {
    instanceId: report.instanceId,
    patch: report.patch,
    resolved: report.resolved,
    appliedWith: report.appliedWith,
    reportId,
    reportPath,
    durationMs: report.durationMs,
  };
  if (report.reason !== undefined) summary.reason = report.reason;
  if (report.resolution && !report.resolution.resolved) {
    summary.failingTests = sampleOf(failingTestsOf(report.resolution));
  }
  if (report.revertedFiles.length > 0)
    summary.revertedFiles = sampleOf(report.revertedFiles.map((f) => f.path));
  if (report.runnerHooks.length > 0) {
    summary.runnerHooks = sampleOf(report.runnerHooks.map((h) => `${h.file}:${h.line} ${h.rule}`));
  }
  return summary;
}
