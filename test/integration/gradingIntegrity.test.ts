import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ArtifactStore } from '../../activities/artifacts';
import { LocalSandboxBackend } from '../../activities/localSandbox';
import { SandboxPool } from '../../activities/sandboxPool';
import { writeValidationReport } from '../../activities/tasks';
import { instanceSchema, type TaskInstance } from '../../domain/instance';
import { verdictFor } from '../../domain/validation';
import { runCli } from '../helpers/cli';
import { fixtureInstances, isolatedHome } from '../helpers/env';
import { patchFrom, quickstartInstance } from '../helpers/quickstart';
import { CONFTEST_HOOK_PATCH, gradeWith, localHarness } from '../sandbox/suites';

/**
 * Patches that try to get credit without fixing the code, graded for real (local sandbox, real pytest):
 * ones that rewrite test outcomes through the test machinery are reverted, ones that reach into the test
 * runner from the package are flagged.
 */

const home = isolatedHome('grading-integrity');
const store = new ArtifactStore();
const pool = new SandboxPool(new LocalSandboxBackend(path.join(home, 'sandboxes')));
const fixtures = fixtureInstances().map((row) => instanceSchema.parse(row));
const harness = localHarness(pool, store, fixtures);
const ordinal = fixtures[0]!;

const gradeModelPatch = async (instance: TaskInstance, patch: string, sandboxId: string) =>
  gradeWith(harness, instance, { kind: 'model', patchId: (await store.put(patch)).id }, sandboxId);

describe('grading gives no credit for rewriting test outcomes', () => {
  it('reverts a root conftest.py hook: alone it does not resolve, with the gold patch the real tests decide', async () => {
    const alone = await gradeModelPatch(ordinal, CONFTEST_HOOK_PATCH, 'conftest-alone');
    expect(alone.summary.resolved, JSON.stringify(alone.report.resolution)).toBe(false);
    expect(alone.report.revertedFiles).toEqual([{ path: 'conftest.py', action: 'removed' }]);
    expect(alone.summary.revertedFiles).toEqual({ count: 1, first: ['conftest.py'] });
    for (const test of ordinal.FAIL_TO_PASS) expect(alone.report.statuses[test]).toBe('FAILED');
    expect(alone.summary.failingTests?.count).toBe(ordinal.FAIL_TO_PASS.length);
    expect(alone.summary.reason).toBe(
      `${ordinal.FAIL_TO_PASS.length} of ${ordinal.FAIL_TO_PASS.length} FAIL_TO_PASS tests did not pass`,
    );

    const withGold = await gradeModelPatch(ordinal, ordinal.patch + CONFTEST_HOOK_PATCH, 'conftest-gold');
    expect(withGold.summary.resolved, JSON.stringify(withGold.report.resolution)).toBe(true);
    expect(withGold.report.revertedFiles).toEqual([{ path: 'conftest.py', action: 'removed' }]);
    expect(withGold.report.appliedWith).toBe('git apply');
  });

  it('reverts an edit to a test file the test patch does not touch', async () => {
    // webcolors' tests run as a directory: pytest imports tests/test_conversion.py before it runs
    // tests/test_html5.py, so a module-level monkeypatch there "fixes" the bug for the FAIL_TO_PASS test.
    const instance = quickstartInstance('webcolors__webcolors-drop-branch-d1282191');
    const patch = patchFrom(instance, (dir) =>
      fs.appendFileSync(
        path.join(dir, 'tests', 'test_conversion.py'),
        `

import webcolors as _webcolors

_parse = _webcolors.html5_parse_legacy_color


def _refuse_transparent(value):
    if isinstance(value, str) and value.lower() == "transparent":
        raise ValueError('HTML5 legacy color parsing forbids "transparent" as a value.')
    return _parse(value)


_webcolors.html5_parse_legacy_color = _refuse_transparent
`,
      ),
    );
    expect(patch).toContain('diff --git a/tests/test_conversion.py');
    const graded = await gradeModelPatch(instance, patch, 'test-file-edit');
    expect(graded.summary.resolved).toBe(false);
    expect(graded.report.revertedFiles).toEqual([{ path: 'tests/test_conversion.py', action: 'restored' }]);
    for (const test of instance.FAIL_TO_PASS) expect(graded.report.statuses[test]).toBe('FAILED');
    expect(graded.summary.failingTests?.first[0]).toEqual({
      test: instance.FAIL_TO_PASS[0],
      list: 'FAIL_TO_PASS',
      status: 'FAILED',
    });
  });

  it("flags a hook installed from the package's __init__.py, and says where", async () => {
    const patch = patchFrom(ordinal, (dir) =>
      fs.appendFileSync(
        path.join(dir, 'inflection', '__init__.py'),
        `

try:
    import _pytest.reports as _reports

    _make = _reports.TestReport.from_item_and_call.__func__

    def _always_pass(cls, item, call):
        report = _make(cls, item, call)
        report.outcome = "passed"
        return report

    _reports.TestReport.from_item_and_call = classmethod(_always_pass)
except ImportError:
    pass
`,
      ),
    );
    const graded = await gradeModelPatch(ordinal, patch, 'init-hook');
    expect(graded.report.revertedFiles).toEqual([]);
    // Every line of the hook that touches pytest's reports is named, with its line in __init__.py.
    const init = patch.split('\n').findIndex((l) => l.startsWith('@@'));
    const firstLine = Number(/\+(\d+)/.exec(patch.split('\n')[init]!)![1]);
    expect(graded.report.runnerHooks.map((h) => [h.rule, h.text])).toEqual([
      ['uses pytest internals (_pytest)', 'import _pytest.reports as _reports'],
      ['rewrites test reports or outcomes', '_make = _reports.TestReport.from_item_and_call.__func__'],
      ['rewrites test reports or outcomes', 'report.outcome = "passed"'],
      [
        'rewrites test reports or outcomes',
        '_reports.TestReport.from_item_and_call = classmethod(_always_pass)',
      ],
    ]);
    expect(graded.report.runnerHooks[0]!.file).toBe('inflection/__init__.py');
    expect(graded.report.runnerHooks[0]!.line).toBeGreaterThan(firstLine);
    // Flagged, not neutralised: the hook ran with the tests (it made every test pass), and the result
    // says so for the stages that decide what to learn from.
    expect(graded.summary.resolved).toBe(true);
    expect(graded.summary.runnerHooks?.count).toBe(4);
    expect(graded.summary.runnerHooks?.first[0]).toMatch(
      /^inflection\/__init__\.py:\d+ uses pytest internals/,
    );
  });
});

describe('entropo grading show', () => {
  it("prints one grading's report from a validate run: why, apply log, reverted files, failing tests, test log", async () => {
    const gold = await gradeModelPatch(ordinal, CONFTEST_HOOK_PATCH, 'show-gold');
    const empty = await gradeWith(harness, ordinal, { kind: 'empty' }, 'show-empty');
    const runId = 'show-run';
    const written = await writeValidationReport({ store }, runId, [
      verdictFor(ordinal.instance_id, gold.summary, empty.summary),
    ]);
    // validation.md says why the gold patch failed, names the failing tests and where the report is.
    const markdown = fs.readFileSync(written.markdownPath, 'utf8');
    expect(markdown).toContain(
      `- why: ${ordinal.FAIL_TO_PASS.length} of ${ordinal.FAIL_TO_PASS.length} FAIL_TO_PASS tests did not pass`,
    );
    expect(markdown).toContain(`\`${ordinal.FAIL_TO_PASS[0]}\` (FAIL_TO_PASS, FAILED)`);
    expect(markdown).toContain(`- report: ${gold.summary.reportPath}`);
    expect(gold.summary.reportPath).toBe(store.pathOf(gold.summary.reportId));
    expect(fs.existsSync(gold.summary.reportPath!)).toBe(true);

    const shown = await runCli(home, 'grading', 'show', runId, ordinal.instance_id, 'gold');
    expect(shown.code, shown.stderr).toBe(0);
    const out = shown.stdout;
    expect(out).toContain(`${ordinal.instance_id} · model patch · unresolved: ${gold.summary.reason}`);
    expect(out).toContain(`report: ${gold.summary.reportPath} (${gold.summary.reportId})`);
    expect(out).toContain('applied with: git apply');
    expect(out).toMatch(/apply log:\n {2}git apply: exit 0\n/);
    expect(out).toContain('test machinery reverted (1): conftest.py (removed)');
    expect(out).toContain(`FAIL_TO_PASS: 0 of ${ordinal.FAIL_TO_PASS.length} pass`);
    expect(out).toContain(`FAILED  FAIL_TO_PASS ${ordinal.FAIL_TO_PASS[0]}`);
    const logPath = /^test log: (.+)$/m.exec(out)![1]!;
    expect(logPath).toBe(store.pathOf(gold.report.testLogId!));
    expect(fs.readFileSync(logPath, 'utf8')).toContain(`FAILED ${ordinal.FAIL_TO_PASS[0]}`);

    // The same report by its id, and the empty patch's by the run.
    const byId = await runCli(home, 'grading', 'show', gold.summary.reportId);
    expect(byId.stdout).toBe(out);
    const emptyShown = await runCli(home, 'grading', 'show', runId, ordinal.instance_id, 'empty');
    expect(emptyShown.stdout).toContain('empty patch · unresolved');
    expect(emptyShown.stdout).toContain('applied with: (empty patch)');

    // Bad references say what was expected and exit 2.
    const noRun = await runCli(home, 'grading', 'show', 'no-such-run', 'x');
    expect(noRun.code).toBe(2);
    expect(noRun.stderr).toMatch(/"no-such-run" is neither a report id .* nor a finished validate run/);
    const noInstance = await runCli(home, 'grading', 'show', runId, 'nope');
    expect(noInstance.code).toBe(2);
    expect(noInstance.stderr).toContain(`run show-run has no instance nope (it has ${ordinal.instance_id})`);
    const badPatch = await runCli(home, 'grading', 'show', runId, ordinal.instance_id, 'silver');
    expect(badPatch.code).toBe(2);
    expect(badPatch.stderr).toContain('unknown patch "silver" (expected gold or empty)');
  });
});
