import { upsertSearchAttributes } from '@temporalio/workflow';
import type { RegressionCheckResult } from '../domain/regression';
import type { SandboxConfig } from '../domain/runConfig';
import { inOwnSandbox } from './sandboxes';

export type { RegressionCheckResult } from '../domain/regression';

export interface RegressionCheckInput {
  runId: string;
  instanceId: string;
  instanceRef: string;
  /** Artifact id of the model's patch. */
  patchId: string;
  sandbox: SandboxConfig;
  /** Limit for each of the two test runs. */
  testTimeoutSec: number;
}

/**
 * The selector's regression check of one patch on one instance, in its own sandbox:
 *   create a sandbox (any sandbox worker) → run the repository's tests at the base commit, apply the patch,
 *   run them again (on the worker holding it) → destroy it.
 * Restarts in a fresh sandbox like a grading; a check that finished is never repeated.
 */
export async function regressionCheckWorkflow(input: RegressionCheckInput): Promise<RegressionCheckResult> {
  upsertSearchAttributes({
    EntropoRunId: [input.runId],
    EntropoStage: ['regression-check'],
    EntropoTaskId: [input.instanceId],
  });
  return inOwnSandbox(
    input,
    2 * input.testTimeoutSec + 20 * input.sandbox.commandTimeoutSec,
    (onSandboxWorker, sandboxId) =>
      onSandboxWorker.checkRegressions({
        sandboxId,
        instanceId: input.instanceId,
        instanceRef: input.instanceRef,
        patchId: input.patchId,
        testTimeoutSec: input.testTimeoutSec,
        commandTimeoutSec: input.sandbox.commandTimeoutSec,
        outputLimitBytes: input.sandbox.outputLimitBytes,
      }),
  );
}
