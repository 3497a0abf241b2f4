import type { TestStatus, TestStatusMap } from './testLog';

/**
 * SWE-bench's resolution rule. An instance is resolved when every FAIL_TO_PASS test passes
 * (PASSED or XFAIL) and every PASS_TO_PASS test still passes (PASSED, XFAIL or SKIPPED).
 * A test missing from the log counts as failed; a patch that does not apply resolves nothing.
 */

const F2P_OK: ReadonlySet<TestStatus> = new Set(['PASSED', 'XFAIL']);
const P2P_OK: ReadonlySet<TestStatus> = new Set(['PASSED', 'XFAIL', 'SKIPPED']);

export interface TestListOutcome {
  success: string[];
  /** Tests that did not pass, with their status or `MISSING`. */
  failure: { test: string; status: TestStatus | 'MISSING' }[];
}

export interface Resolution {
  resolved: boolean;
  FAIL_TO_PASS: TestListOutcome;
  PASS_TO_PASS: TestListOutcome;
}

function checkList(
  tests: readonly string[],
  statuses: TestStatusMap,
  ok: ReadonlySet<TestStatus>,
): TestListOutcome {
  const outcome: TestListOutcome = { success: [], failure: [] };
  for (const test of tests) {
    const status = statuses[test];
    if (status !== undefined && ok.has(status)) outcome.success.push(test);
    else outcome.failure.push({ test, status: status ?? 'MISSING' });
  }
  return outcome;
}

export function decideResolution(
  failToPass: readonly string[],
  passToPass: readonly string[],
  statuses: TestStatusMap,
): Resolution {
  const f2p = checkList(failToPass, statuses, F2P_OK);
  const p2p = checkList(passToPass, statuses, P2P_OK);
  return {
    resolved: f2p.failure.length === 0 && p2p.failure.length === 0,
    FAIL_TO_PASS: f2p,
    PASS_TO_PASS: p2p,
  };
}

/** An instance is a valid task when its gold patch resolves it and the empty patch does not. */
export function isValidTask(goldResolved: boolean, emptyResolved: boolean): boolean {
  return goldResolved && !emptyResolved;
}
