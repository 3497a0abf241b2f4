import { ApplicationFailure, Context } from '@temporalio/activity';
import type { TaskInstance } from '../domain/instance';
import {
  judgeRegressions,
  type RegressionCheckResult,
  type RegressionReport,
  regressionResultOf,
} from '../domain/regression';
import type { SandboxBackendName } from '../domain/runConfig';
import type { ArtifactStore } from './artifacts';
import { applyModelPatch, runRepoTests, UNDO_CHANGES } from './grading';
import { withHeartbeat } from './heartbeat';
import type { WorkKey } from './recordedWork';
import type { SandboxPool } from './sandboxPool';

export interface RegressionCheckRequest {
  sandboxId: string;
  instanceId: string;
  /** Artifact id of the instance JSON. */
  instanceRef: string;
  /** Artifact id of the model's patch (a unified diff). */
  patchId: string;
  testTimeoutSec: number;
  commandTimeoutSec: number;
  outputLimitBytes: number;
}

/**
 * The selector's regression check in a fresh sandbox at the base commit: run the instance's test command
 * (the repository's own tests), apply the model's patch as grading does (strictest method first, never in
 * reverse) and put the test machinery it changed back as at the base commit, run the test command again and
 * compare. The test patch and the FAIL_TO_PASS / PASS_TO_PASS lists are never read: hidden tests do not reach
 * the selector. A patch that does not apply or tests that hang make a check that is not regression-free,
 * with the reason; they are not errors.
 */
export async function checkRegressions(
  deps: { store: ArtifactStore; sandboxes: SandboxPool },
  request: RegressionCheckRequest,
): Promise<RegressionCheckResult> {
  const started = performance.now();
  const instance = await deps.store.getJson<TaskInstance>(request.instanceRef);
  if (!instance.test_command) {
    throw ApplicationFailure.nonRetryable(
      `instance ${instance.instance_id} has no test_command; the regression check runs the repository's tests with it`,
      'InvalidInstance',
    );
  }
  const sandbox = deps.sandboxes.get(request.sandboxId);
  const signal = Context.current().cancellationSignal;
  const execOptions = {
    timeoutSec: request.commandTimeoutSec,
    outputLimitBytes: request.outputLimitBytes,
    signal,
  };
  const testOptions = { timeoutSec: request.testTimeoutSec, signal };
  const report: RegressionReport = {
    instanceId: instance.instance_id,
    patchId: request.patchId,
    regressionFree: false,
    testCommand: instance.test_command,
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
  };

  return withHeartbeat({ instanceId: instance.instance_id, regressionCheck: request.patchId }, async () => {
    const patchText = await deps.store.getText(request.patchId);
    report.atBase = await runRepoTests(deps.store, sandbox, instance, testOptions);
    report.durations.baseTestMs = report.atBase.durationMs;
    let applyReason: string | undefined;
    if (!report.atBase.timedOut) {
      // The patch goes onto the base commit as it was checked out, not onto what the test run left.
      await sandbox.exec(UNDO_CHANGES, execOptions);
      const applyStarted = performance.now();
      if (patchText.trim() === '') {
        report.applied = true;
      } else {
        const { reason, ...applied } = await applyModelPatch(
          sandbox,
          instance.base_commit,
          patchText,
          execOptions,
        );
        Object.assign(report, applied);
        report.applied = applied.appliedWith !== null;
        applyReason = reason;
      }
      report.durations.applyMs = Math.round(performance.now() - applyStarted);
      if (report.applied) {
        report.withPatch = await runRepoTests(deps.store, sandbox, instance, testOptions);
        report.durations.patchedTestMs = report.withPatch.durationMs;
      }
    }
    const verdict = judgeRegressions(
      { atBase: report.atBase, applied: report.applied, applyReason, withPatch: report.withPatch },
      request.testTimeoutSec,
    );
    report.regressionFree = verdict.regressionFree;
    report.comparison = verdict.comparison;
    if (verdict.reason !== undefined) report.reason = verdict.reason;
    report.durationMs = Math.round(performance.now() - started);
    const { id: reportId } = await deps.store.putJson(report);
    return regressionResultOf(report, reportId);
  });
}

/**
 * The identity of a regression check (see `recorded`): the workflow it belongs to, the instance's content,
 * the patch's content, the limits and the sandbox backend.
 */
export function regressionCheckWorkKey(
  request: RegressionCheckRequest,
  context: { namespace: string; workflowId: string; backend: SandboxBackendName },
): WorkKey {
  return {
    work: 'regression-check',
    version: 1,
    namespace: context.namespace,
    workflowId: context.workflowId,
    instanceRef: request.instanceRef,
    patchId: request.patchId,
    backend: context.backend,
    testTimeoutSec: request.testTimeoutSec,
    commandTimeoutSec: request.commandTimeoutSec,
    outputLimitBytes: request.outputLimitBytes,
  };
}
