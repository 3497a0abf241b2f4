import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArtifactStore } from '../../activities/artifacts';
import { venvBin } from '../../activities/paths';
import type { TaskInstance } from '../../domain/instance';
import type { RegressionCheckResult, RegressionReport } from '../../domain/regression';
import { sandboxConfigSchema } from '../../domain/runConfig';
import { parseTestLog, type TestStatusMap } from '../../domain/testLog';
import type { RegressionCheckInput } from '../../workflows/regressionCheck';
import { isolatedHome } from '../helpers/env';
import { atBaseCommit, patchFrom, quickstartInstance } from '../helpers/quickstart';
import { sandboxDirs, startTestTemporal, startTestWorkers, type TestTemporal } from '../helpers/temporal';

/**
 * The selector's regression check, for real: a dev server, the worker roles, bwrap sandboxes and the
 * repository's own pytest suite, on a bundled quickstart task.
 */

const home = isolatedHome('regression-check');
const PREFIX = 'regression-test';
const store = new ArtifactStore();
let temporal: TestTemporal;
let workers: Awaited<ReturnType<typeof startTestWorkers>>;

// Its test patch adds `test_parse_legacy_color_error[...]`, a FAIL_TO_PASS test the base commit lacks.
const instance = quickstartInstance('webcolors__webcolors-drop-branch-d1282191');
const HIDDEN_TEST = 'test_parse_legacy_color_error';

/** Statuses of the repository's tests at the base commit, run outside any sandbox (the project venv). */
const statusesAtBase: TestStatusMap = atBaseCommit(instance, (dir) => {
  const result = spawnSync('bash', ['-c', instance.test_command!], {
    cwd: dir,
    encoding: 'utf8',
    env: { ...process.env, PATH: `${venvBin()}:${process.env.PATH}` },
  });
  return parseTestLog(instance.log_parser, `${result.stdout}\n${result.stderr}`);
});
const passingAtBase = Object.keys(statusesAtBase).filter((t) => statusesAtBase[t] === 'PASSED');

beforeAll(async () => {
  temporal = await startTestTemporal(home);
  workers = await startTestWorkers(temporal.address, PREFIX);
});
afterAll(async () => {
  await workers?.stop();
  await temporal?.close();
});

async function check(
  name: string,
  patch: string,
  options: { instance?: TaskInstance; testTimeoutSec?: number } = {},
): Promise<{ result: RegressionCheckResult; report: RegressionReport }> {
  const checked = options.instance ?? instance;
  const input: RegressionCheckInput = {
    runId: 'regression',
    instanceId: checked.instance_id,
    instanceRef: (await store.putJson(checked)).id,
    patchId: (await store.put(patch)).id,
    sandbox: sandboxConfigSchema.parse({}),
    // The default limit: real pytest runs must never race a limit on a busy machine.
    testTimeoutSec: options.testTimeoutSec ?? 1800,
  };
  const result: RegressionCheckResult = await temporal.client.workflow.execute('regressionCheckWorkflow', {
    taskQueue: `${PREFIX}-cpu`,
    workflowId: `regression/${name}`,
    args: [input],
  });
  return { result, report: await store.getJson<RegressionReport>(result.reportId) };
}

/** The change of a module function's line, in the repository at its base commit. */
const replaceIn = (dir: string, file: string, from: string, to: string) => {
  const full = path.join(dir, file);
  const text = fs.readFileSync(full, 'utf8');
  if (!text.includes(from)) throw new Error(`${file} has no ${JSON.stringify(from)}`);
  fs.writeFileSync(full, text.replace(from, to));
};

const EXPAND_THREE_DIGITS = '        hex_digits = "".join(2 * s for s in hex_digits)';
const REFUSE_THREE_DIGITS = '        raise ValueError("three-digit hex is not supported")';
/** What refusing three-digit hex in `normalize_hex` breaks, found by running the suite on that change. */
const BROKEN_BY_REFUSAL = [
  'tests/test_conversion.py::test_hex_to_name[white-three-digit]',
  'tests/test_conversion.py::test_hex_to_rgb[white-three-digit]',
  'tests/test_conversion.py::test_hex_to_rgb_percent[white-three-digit]',
  'tests/test_html5.py::test_parse_legacy_color_hex[three-digit-black]',
  'tests/test_html5.py::test_parse_legacy_color_hex[three-digit-white]',
  'tests/test_normalization.py::test_normalize_hex[three-digit-lowercase]',
  'tests/test_normalization.py::test_normalize_hex[three-digit-uppercase]',
];

describe('regressionCheckWorkflow (real dev server, real bwrap, real pytest)', () => {
  it("finds the gold patch regression-free, running only the repository's own tests", async () => {
    // The suite at the base commit is big enough to tell, and has none of the hidden tests.
    expect(passingAtBase.length).toBeGreaterThan(400);
    expect(Object.keys(statusesAtBase).some((t) => t.includes(HIDDEN_TEST))).toBe(false);

    const { result, report } = await check('gold', instance.patch);
    expect(result).toEqual({
      instanceId: instance.instance_id,
      regressionFree: true,
      applied: true,
      passedAtBase: passingAtBase.length,
      stillPassing: passingAtBase.length,
      broken: [],
      reportId: result.reportId,
    });
    // The test patch never reached the sandbox: both runs ran exactly the tests the base commit has.
    expect(report.atBase?.statuses).toEqual(statusesAtBase);
    expect(Object.keys(report.withPatch!.statuses).sort()).toEqual(Object.keys(statusesAtBase).sort());
    for (const test of instance.FAIL_TO_PASS) {
      expect(test).toContain(HIDDEN_TEST);
      expect(report.atBase!.statuses[test]).toBeUndefined();
      expect(report.withPatch!.statuses[test]).toBeUndefined();
    }
    expect(report.appliedWith).toBe('git apply');
    expect(report.revertedFiles).toEqual([]);
    expect(report.durations.baseTestMs).toBeGreaterThan(0);
    expect(report.durations.patchedTestMs).toBeGreaterThan(0);
    // Both logs are kept, and the patched one shows the gold fix did not disturb the suite.
    expect(await store.getText(report.withPatch!.logId)).toContain(`${passingAtBase.length} passed`);
    expect(sandboxDirs(home)).toEqual([]);
  });

  it('names the tests a patch breaks', async () => {
    const patch = patchFrom(instance, (dir) =>
      replaceIn(dir, 'src/webcolors/_normalization.py', EXPAND_THREE_DIGITS, REFUSE_THREE_DIGITS),
    );
    const { result, report } = await check('breaks', patch);
    expect(result.regressionFree).toBe(false);
    expect(result.applied).toBe(true);
    expect(result.passedAtBase).toBe(passingAtBase.length);
    expect(result.stillPassing).toBe(passingAtBase.length - BROKEN_BY_REFUSAL.length);
    expect(result.broken).toEqual(BROKEN_BY_REFUSAL.slice(0, 5));
    expect(result.reason).toMatch(
      new RegExp(
        `^7 of ${passingAtBase.length} tests that passed at the base commit no longer pass \\(first: `,
      ),
    );
    expect(report.comparison?.broken).toEqual(BROKEN_BY_REFUSAL.map((test) => ({ test, status: 'FAILED' })));
  });

  it('puts back test files a patch deletes: their tests still run', async () => {
    const deleted = 'tests/test_normalization.py';
    const deletesTests = patchFrom(instance, (dir) => fs.rmSync(path.join(dir, deleted)));
    expect(deletesTests).toContain(`deleted file mode`);
    const alone = await check('deletes-tests', deletesTests);
    expect(alone.result).toMatchObject({ regressionFree: true, stillPassing: passingAtBase.length });
    expect(alone.report.revertedFiles).toEqual([{ path: deleted, action: 'restored' }]);
    expect(
      alone.report.withPatch!.statuses['tests/test_normalization.py::test_normalize_hex[lowercase]'],
    ).toBe('PASSED');

    // Deleting the tests that catch a breakage does not hide it.
    const hidesBreakage = patchFrom(instance, (dir) => {
      replaceIn(dir, 'src/webcolors/_normalization.py', EXPAND_THREE_DIGITS, REFUSE_THREE_DIGITS);
      for (const file of ['tests/test_conversion.py', 'tests/test_html5.py', deleted]) {
        fs.rmSync(path.join(dir, file));
      }
    });
    const hidden = await check('hides-breakage', hidesBreakage);
    expect(hidden.result.regressionFree).toBe(false);
    expect(hidden.result.broken).toEqual(BROKEN_BY_REFUSAL.slice(0, 5));
    expect(hidden.report.revertedFiles.map((f) => f.action)).toEqual(['restored', 'restored', 'restored']);
  });

  it('is not regression-free when the patch does not apply, with the reason', async () => {
    const stale = instance.patch.replaceAll('src/webcolors/_html5.py', 'src/webcolors/_html6.py');
    expect(stale).not.toBe(instance.patch);
    const { result, report } = await check('stale-patch', stale);
    expect(result).toMatchObject({
      regressionFree: false,
      applied: false,
      passedAtBase: passingAtBase.length,
      stillPassing: 0,
      broken: [],
      reason: 'patch did not apply',
    });
    expect(report.withPatch).toBeNull();
    expect(report.applyAttempts.map((a) => a.method)).toEqual([
      'git apply',
      'git apply --reject',
      'patch --fuzz=5',
    ]);
  });

  it('is not regression-free when the tests hang, with the reason', async () => {
    // The command hangs by itself, so the short limit is met however busy the machine is.
    const hanging = { ...instance, instance_id: 'hanging-tests', test_command: 'sleep 1000' };
    const { result, report } = await check('hanging', instance.patch, {
      instance: hanging,
      testTimeoutSec: 3,
    });
    expect(result).toMatchObject({
      regressionFree: false,
      passedAtBase: 0,
      reason: 'tests timed out after 3s at the base commit',
    });
    expect(report.atBase?.timedOut).toBe(true);
    expect(report.withPatch).toBeNull();
    expect(sandboxDirs(home)).toEqual([]);
  });
});
