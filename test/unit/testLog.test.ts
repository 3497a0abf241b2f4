import { describe, expect, it } from 'vitest';
import { decideResolution, isValidTask } from '../../domain/resolution';
import { parsePytestLog } from '../../domain/testLog';

const LOG = `
============================= test session starts ==============================
test_a.py::test_one PASSED                                               [ 25%]
test_a.py::test_two FAILED                                               [ 50%]
=========================== short test summary info ============================
PASSED test_a.py::test_one
PASSED test_a.py::test_param[a b-c]
FAILED test_a.py::test_two - AssertionError: assert 1 == 2
SKIPPED [1] test_a.py:10: no network
XFAIL test_a.py::test_known - bug 12
ERROR test_b.py::test_fixture - RuntimeError
========================= 1 failed, 2 passed in 0.1s ==========================
`;

describe('parsePytestLog', () => {
  it('reads summary and verbose lines, stripping messages', () => {
    const statuses = parsePytestLog(LOG);
    expect(statuses['test_a.py::test_one']).toBe('PASSED');
    expect(statuses['test_a.py::test_two']).toBe('FAILED');
    expect(statuses['test_a.py::test_param[a b-c]']).toBe('PASSED');
    expect(statuses['test_a.py::test_known']).toBe('XFAIL');
    expect(statuses['test_b.py::test_fixture']).toBe('ERROR');
  });
});

describe('decideResolution (SWE-bench rule)', () => {
  const statuses = parsePytestLog(LOG);
  it('resolves when FAIL_TO_PASS pass (or xfail) and PASS_TO_PASS pass', () => {
    expect(
      decideResolution(
        ['test_a.py::test_one', 'test_a.py::test_known'],
        ['test_a.py::test_param[a b-c]'],
        statuses,
      ).resolved,
    ).toBe(true);
  });
  it('a failing or missing test fails', () => {
    const r = decideResolution(['test_a.py::test_two'], ['test_a.py::test_gone'], statuses);
    expect(r.resolved).toBe(false);
    expect(r.FAIL_TO_PASS.failure).toEqual([{ test: 'test_a.py::test_two', status: 'FAILED' }]);
    expect(r.PASS_TO_PASS.failure).toEqual([{ test: 'test_a.py::test_gone', status: 'MISSING' }]);
  });
  it('SKIPPED counts for PASS_TO_PASS only', () => {
    const s = { t: 'SKIPPED' as const };
    expect(decideResolution([], ['t'], s).resolved).toBe(true);
    expect(decideResolution(['t'], [], s).resolved).toBe(false);
  });
  it('valid task = gold resolves and empty does not', () => {
    expect(isValidTask(true, false)).toBe(true);
    expect(isValidTask(true, true)).toBe(false);
    expect(isValidTask(false, false)).toBe(false);
  });
});
