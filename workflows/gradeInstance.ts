import { upsertSearchAttributes } from '@temporalio/workflow';
import type { GradeSummary, PatchChoice } from '../domain/grading';
import type { SandboxConfig } from '../domain/runConfig';
import { inOwnSandbox } from './sandboxes';

export interface GradeInstanceInput {
  runId: string;
  instanceId: string;
  instanceRef: string;
  patch: PatchChoice;
  sandbox: SandboxConfig;
  testTimeoutSec: number;
}

/**
 * Grades one patch on one instance in its own sandbox:
 *   create a sandbox (any sandbox worker) → grade it (on the worker holding it) → destroy it.
 * If the worker holding the sandbox vanishes (no heartbeat), the grading restarts in a fresh sandbox on
 * another worker; a grading that finished is never repeated. The abandoned sandbox is destroyed by its
 * worker if that worker is still alive.
 */
export async function gradeInstanceWorkflow(input: GradeInstanceInput): Promise<GradeSummary> {
  upsertSearchAttributes({
    EntropoRunId: [input.runId],
    EntropoStage: ['grade'],
    EntropoTaskId: [input.instanceId],
  });
  return inOwnSandbox(
    input,
    input.testTimeoutSec + 20 * input.sandbox.commandTimeoutSec,
    (onSandboxWorker, sandboxId) =>
      onSandboxWorker.gradeInSandbox({
        sandboxId,
        instanceId: input.instanceId,
        instanceRef: input.instanceRef,
        patch: input.patch,
        testTimeoutSec: input.testTimeoutSec,
        commandTimeoutSec: input.sandbox.commandTimeoutSec,
        outputLimitBytes: input.sandbox.outputLimitBytes,
      }),
  );
}
