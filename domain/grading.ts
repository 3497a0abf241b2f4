import type { Resolution } from './resolution';
import type { TestStatusMap } from './testLog';

/** What is graded: the instance's gold patch, the empty patch, or a model's patch stored as an artifact. */
export type PatchChoice = { kind: 'gold' } | { kind: 'empty' } | { kind: 'model'; patchId: string };

/**
 * Ways to apply a model patch, strictest first (as SWE-bench's harness does). The first that exits 0
 * wins and is recorded in the report.
 */
export const PATCH_APPLY_METHODS = [
  { name: 'git apply', command: (file: string) => `git apply --verbose ${file}` },
  { name: 'git apply --reject', command: (file: string) => `git apply --verbose --reject ${file}` },
  { name: 'patch --fuzz=5', command: (file: string) => `patch --batch --fuzz=5 -p1 -i ${file}` },
] as const;

export interface ApplyAttempt {
  method: string;
  exitCode: number | null;
  output: string;
}

export interface GradeSummary {
  instanceId: string;
  patch: PatchChoice['kind'];
  resolved: boolean;
  /** Why it is unresolved when the tests never decided it (patch did not apply, tests timed out, …). */
  reason?: string;
  /** Apply method that worked, or null for the empty patch / when none did. */
  appliedWith: string | null;
  reportId: string;
  durationMs: number;
}

/** Everything about one grading, stored as an artifact; the workflow only sees {@link GradeSummary}. */
export interface GradeReport extends Omit<GradeSummary, 'reportId'> {
  applyAttempts: ApplyAttempt[];
  testPatchApplied: boolean;
  testCommand: string;
  testExitCode: number | null;
  testTimedOut: boolean;
  testLogId: string | null;
  statuses: TestStatusMap;
  resolution: Resolution | null;
  durations: { setupMs: number; applyMs: number; testMs: number };
}
