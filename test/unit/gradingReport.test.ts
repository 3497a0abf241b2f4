import { describe, expect, it } from 'vitest';
import {
  type ApplyAttempt,
  describeFailingTests,
  type GradeReport,
  type GradeSummary,
  PATCH_APPLY_METHODS,
  summaryOf,
  whyPatchDidNotApply,
} from '../../domain/grading';
import { decideResolution } from '../../domain/resolution';
import { markdownCell, renderValidationMarkdown, verdictFor } from '../../domain/validation';

describe('patch application rules', () => {
  it('never lets `patch` assume -R', () => {
    const patch = PATCH_APPLY_METHODS.find((m) => m.name.startsWith('patch'))!;
    expect(patch.command('/tmp/p')).toContain('--forward');
    for (const method of PATCH_APPLY_METHODS) expect(method.command('/tmp/p')).not.toMatch(/ -R\b|--reverse/);
  });

  it('says why a patch did not apply: only in reverse, only in part, or not at all', () => {
    const reject = (output: string): ApplyAttempt[] => [
      { method: 'git apply', exitCode: 1, output: 'error: patch failed' },
      { method: 'git apply --reject', exitCode: 1, output },
      { method: 'patch --fuzz=5', exitCode: 1, output: '1 out of 2 hunks FAILED' },
    ];
    const partly = 'Applying patch a.py with 1 reject...\nHunk #1 applied cleanly.\nRejected hunk #2.\n';
    expect(whyPatchDidNotApply(reject(partly), false)).toBe(
      'patch applies only in part (1 of 2 hunks do not apply)',
    );
    const none = 'Applying patch a.py with 2 rejects...\nRejected hunk #1.\nRejected hunk #2.\n';
    expect(whyPatchDidNotApply(reject(none), false)).toBe('patch did not apply');
    expect(whyPatchDidNotApply(reject(none), true)).toBe(
      'patch applies only in reverse (it undoes changes the code already has)',
    );
  });
});

const resolution = decideResolution(
  ['t::a', 't::b', 't::c'],
  ['t::p1', 't::p2', 't::p3', 't::p4', 't::p5', 't::p6'],
  {
    't::a': 'PASSED',
    't::b': 'FAILED',
    't::p1': 'ERROR',
    't::p2': 'FAILED',
    't::p3': 'FAILED',
    't::p4': 'FAILED',
    't::p5': 'FAILED',
    't::p6': 'PASSED',
  },
);

const report = (overrides: Partial<GradeReport> = {}): GradeReport => ({
  instanceId: 'i',
  patch: 'gold',
  resolved: false,
  reason: describeFailingTests(resolution),
  appliedWith: 'git apply',
  durationMs: 1200,
  applyAttempts: [],
  revertedFiles: [],
  runnerHooks: [],
  testPatchApplied: true,
  testCommand: 'pytest',
  testExitCode: 1,
  testTimedOut: false,
  testLogId: 'sha256:log',
  statuses: {},
  resolution,
  durations: { setupMs: 0, applyMs: 0, testMs: 0 },
  ...overrides,
});

describe('grading summary', () => {
  it('names the failing tests: count per list, the first few, MISSING for tests absent from the log', () => {
    expect(describeFailingTests(resolution)).toBe(
      '2 of 3 FAIL_TO_PASS and 5 of 6 PASS_TO_PASS tests did not pass',
    );
    const summary = summaryOf(report(), 'sha256:r', '/artifacts/r');
    expect(summary).toEqual({
      instanceId: 'i',
      patch: 'gold',
      resolved: false,
      reason: '2 of 3 FAIL_TO_PASS and 5 of 6 PASS_TO_PASS tests did not pass',
      appliedWith: 'git apply',
      reportId: 'sha256:r',
      reportPath: '/artifacts/r',
      durationMs: 1200,
      failingTests: {
        count: 7,
        first: [
          { test: 't::b', list: 'FAIL_TO_PASS', status: 'FAILED' },
          { test: 't::c', list: 'FAIL_TO_PASS', status: 'MISSING' },
          { test: 't::p1', list: 'PASS_TO_PASS', status: 'ERROR' },
          { test: 't::p2', list: 'PASS_TO_PASS', status: 'FAILED' },
          { test: 't::p3', list: 'PASS_TO_PASS', status: 'FAILED' },
        ],
      },
    });
  });

  it('carries reverted files and runner hooks only when there are some', () => {
    const clean = summaryOf(
      report({ resolved: true, reason: undefined, resolution: null }),
      'sha256:r',
      '/r',
    );
    expect(Object.keys(clean).sort()).toEqual(
      ['appliedWith', 'durationMs', 'instanceId', 'patch', 'reportId', 'reportPath', 'resolved'].sort(),
    );
    const touched = summaryOf(
      report({
        revertedFiles: [{ path: 'conftest.py', action: 'removed' }],
        runnerHooks: [
          {
            file: 'pkg/__init__.py',
            line: 4,
            rule: 'uses pytest internals (_pytest)',
            text: 'import _pytest',
          },
        ],
      }),
      'sha256:r',
      '/r',
    );
    expect(touched.revertedFiles).toEqual({ count: 1, first: ['conftest.py'] });
    expect(touched.runnerHooks).toEqual({
      count: 1,
      first: ['pkg/__init__.py:4 uses pytest internals (_pytest)'],
    });
  });
});

describe('validation markdown', () => {
  const grade = (g: Partial<GradeSummary>): GradeSummary => ({
    instanceId: 'i',
    patch: 'gold',
    resolved: true,
    appliedWith: 'git apply',
    reportId: 'sha256:r',
    durationMs: 1500,
    ...g,
  });

  it('keeps the table whole when a message has line breaks or pipes', () => {
    expect(markdownCell('a | b\nc\r\nd')).toBe('a \\| b<br>c<br>d');
    const md = renderValidationMarkdown('r', [
      verdictFor(
        'i',
        { error: 'boom\nTraceback | line 2\n  more', errorType: 'InvalidInstance' },
        grade({ resolved: false }),
      ),
    ]);
    const rows = md.split('\n').filter((line) => line.startsWith('| i |'));
    expect(rows).toHaveLength(1);
    expect(rows[0]).toContain('boom<br>Traceback \\| line 2<br>  more');
    // Unescaped pipes split cells: a row has exactly the table's 5 columns.
    expect(rows[0]!.split(/(?<!\\)\|/).length - 2).toBe(5);
  });

  it('lists why the gold patch did not resolve: failing tests, reverted files, where the report is', () => {
    const gold = grade({
      resolved: false,
      reason: '7 of 9 FAIL_TO_PASS tests did not pass',
      reportPath: '/home/.entropo/artifacts/sha256/ab/abc',
      failingTests: {
        count: 7,
        first: [
          { test: 'tests/a.py::test_x', list: 'FAIL_TO_PASS', status: 'FAILED' },
          { test: 'tests/a.py::test_y', list: 'FAIL_TO_PASS', status: 'MISSING' },
        ],
      },
      revertedFiles: { count: 1, first: ['conftest.py'] },
    });
    const md = renderValidationMarkdown('run-1', [
      verdictFor('inst-1', gold, grade({ resolved: false, patch: 'empty' })),
    ]);
    expect(md).toContain('### inst-1: gold patch does not resolve');
    expect(md).toContain('- why: 7 of 9 FAIL_TO_PASS tests did not pass');
    expect(md).toContain(
      '- failing tests (7): `tests/a.py::test_x` (FAIL_TO_PASS, FAILED), `tests/a.py::test_y` (FAIL_TO_PASS, MISSING), and 5 more',
    );
    expect(md).toContain('- test machinery reverted before the tests ran (1): `conftest.py`');
    expect(md).toContain(
      '- report: /home/.entropo/artifacts/sha256/ab/abc (`entropo grading show run-1 inst-1 gold`)',
    );
    // A valid instance needs no details.
    const fine = renderValidationMarkdown('r', [verdictFor('ok', grade({}), grade({ resolved: false }))]);
    expect(fine).not.toContain('###');
  });
});
