import { describe, expect, it } from 'vitest';
import {
  compareTestRuns,
  judgeRegressions,
  type RegressionReport,
  regressionResultOf,
  type TestCommandRun,
} from '../../domain/regression';
import type { TestStatusMap } from '../../domain/testLog';

const run = (statuses: TestStatusMap, timedOut = false): TestCommandRun => ({
  exitCode: timedOut ? null : 0,
  timedOut,
  logId: 'log',
  statuses,
  durationMs: 10,
});

describe('compareTestRuns', () => {
  it('keeps the tests PASSED at the base commit as the baseline and finds those that no longer pass', () => {
    const atBase: TestStatusMap = {
      't.py::b': 'PASSED',
      't.py::a': 'PASSED',
      't.py::fails': 'FAILED',
      't.py::skipped': 'SKIPPED',
      't.py::gone': 'PASSED',
      't.py::now_fails': 'PASSED',
    };
    const withPatch: TestStatusMap = {
      't.py::a': 'PASSED',
      't.py::b': 'PASSED',
      't.py::fails': 'PASSED',
      't.py::skipped': 'FAILED', // not in the baseline: not a regression
      't.py::now_fails': 'FAILED',
      't.py::new_test': 'FAILED', // new tests do not count either
    };
    expect(compareTestRuns(atBase, withPatch)).toEqual({
      passedAtBase: ['t.py::a', 't.py::b', 't.py::gone', 't.py::now_fails'],
      stillPassing: 2,
      broken: [
        { test: 't.py::gone', status: 'MISSING' },
        { test: 't.py::now_fails', status: 'FAILED' },
      ],
    });
  });

  it('counts a baseline test the patch makes skip, xfail or error as broken', () => {
    const atBase: TestStatusMap = { a: 'PASSED', b: 'PASSED', c: 'PASSED', d: 'PASSED' };
    const withPatch: TestStatusMap = { a: 'SKIPPED', b: 'XFAIL', c: 'ERROR', d: 'PASSED' };
    const { broken, stillPassing } = compareTestRuns(atBase, withPatch);
    expect(broken.map((b) => b.status)).toEqual(['SKIPPED', 'XFAIL', 'ERROR']);
    expect(stillPassing).toBe(1);
  });

  it('reads a test named like an Object prototype key as missing when the patched run lacks it', () => {
    const atBase = JSON.parse('{"toString": "PASSED"}') as TestStatusMap;
    expect(compareTestRuns(atBase, {}).broken).toEqual([{ test: 'toString', status: 'MISSING' }]);
  });
});

describe('judgeRegressions', () => {
  const base = run({ a: 'PASSED', b: 'PASSED' });

  it('is regression-free when every baseline test still passes', () => {
    expect(
      judgeRegressions(
        { atBase: base, applied: true, withPatch: run({ a: 'PASSED', b: 'PASSED', c: 'FAILED' }) },
        60,
      ),
    ).toEqual({
      regressionFree: true,
      comparison: { passedAtBase: ['a', 'b'], stillPassing: 2, broken: [] },
    });
  });

  it('names the broken tests in the reason', () => {
    const verdict = judgeRegressions({ atBase: base, applied: true, withPatch: run({ a: 'FAILED' }) }, 60);
    expect(verdict.regressionFree).toBe(false);
    expect(verdict.reason).toBe(
      '2 of 2 tests that passed at the base commit no longer pass (a FAILED, b MISSING)',
    );
  });

  it('says "first" when more tests broke than the reason lists', () => {
    const many = Object.fromEntries(Array.from({ length: 7 }, (_, i) => [`t${i}`, 'PASSED' as const]));
    const verdict = judgeRegressions({ atBase: run(many), applied: true, withPatch: run({}) }, 60);
    expect(verdict.reason).toBe(
      '7 of 7 tests that passed at the base commit no longer pass (first: t0 MISSING, t1 MISSING, t2 MISSING, t3 MISSING, t4 MISSING)',
    );
  });

  it('is not regression-free when the tests time out, at the base commit or with the patch', () => {
    expect(judgeRegressions({ atBase: run({}, true), applied: false, withPatch: null }, 30)).toEqual({
      regressionFree: false,
      reason: 'tests timed out after 30s at the base commit',
      comparison: null,
    });
    expect(judgeRegressions({ atBase: base, applied: true, withPatch: run({}, true) }, 30)).toEqual({
      regressionFree: false,
      reason: 'tests timed out after 30s with the patch',
      comparison: null,
    });
  });

  it('is not regression-free when the patch does not apply, with the reason grading gives', () => {
    expect(
      judgeRegressions(
        { atBase: base, applied: false, applyReason: 'patch applies only in reverse', withPatch: null },
        30,
      ),
    ).toEqual({ regressionFree: false, reason: 'patch applies only in reverse', comparison: null });
  });
});

describe('regressionResultOf', () => {
  const report = (over: Partial<RegressionReport>): RegressionReport => ({
    instanceId: 'i',
    patchId: 'p',
    regressionFree: false,
    testCommand: 'pytest',
    atBase: null,
    applied: false,
    appliedWith: null,
    applyAttempts: [],
    revertedFiles: [],
    runnerHooks: [],
    withPatch: null,
    comparison: null,
    durationMs: 0,
    durations: { baseTestMs: 0, applyMs: 0, patchedTestMs: 0 },
    ...over,
  });

  it('keeps the result small: counts and at most five broken tests', () => {
    const atBase = run(Object.fromEntries(Array.from({ length: 9 }, (_, i) => [`t${i}`, 'PASSED' as const])));
    const withPatch = run({ t0: 'PASSED', t1: 'PASSED' });
    const verdict = judgeRegressions({ atBase, applied: true, withPatch }, 60);
    const result = regressionResultOf(
      report({ ...verdict, atBase, withPatch, applied: true, appliedWith: 'git apply' }),
      'report-id',
    );
    expect(result).toEqual({
      instanceId: 'i',
      regressionFree: false,
      applied: true,
      passedAtBase: 9,
      stillPassing: 2,
      broken: ['t2', 't3', 't4', 't5', 't6'],
      reportId: 'report-id',
      reason: verdict.reason,
    });
  });

  it('counts the baseline even when the patch did not apply', () => {
    const result = regressionResultOf(
      report({ atBase: run({ a: 'PASSED', b: 'FAILED' }), reason: 'patch did not apply' }),
      'r',
    );
    expect(result).toMatchObject({ passedAtBase: 1, stillPassing: 0, broken: [], applied: false });
    expect(result.reason).toBe('patch did not apply');
  });
});
