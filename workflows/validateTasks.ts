import {
  ApplicationFailure,
  defineQuery,
  executeChild,
  patched,
  proxyActivities,
  setHandler,
  TimeoutFailure,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { CpuActivities } from '../activities';
import { innermostCause, rootMessage } from '../domain/failures';
import { checkRunConfig, type RunConfigCheck, type ValidateRunConfig } from '../domain/runConfig';
import { describeProblems } from '../domain/schemaErrors';
import {
  type GradingFailure,
  type GradingOutcome,
  type InstanceVerdict,
  type ValidationProgress,
  verdictFor,
} from '../domain/validation';
import { mapWithConcurrency } from './concurrency';
import { gradeInstanceWorkflow } from './gradeInstance';

export const validationProgressQuery = defineQuery<ValidationProgress>('progress');

export interface ValidateTasksResult {
  runId: string;
  instances: number;
  valid: string[];
  invalid: { instanceId: string; problem: string }[];
  /**
   * Instances that could not be judged (a missing image, a sandbox that cannot start, a worker that keeps
   * dying), with the cause: infrastructure failures, not task verdicts. Absent in runs from before errors
   * were told apart from invalid instances.
   */
  errors?: { instanceId: string; cause: string }[];
  report: { jsonId: string; markdownId: string; jsonPath: string; markdownPath: string };
}

const { loadInstances, writeValidationReport } = proxyActivities<CpuActivities>({
  startToCloseTimeout: '10 minutes',
  retry: { maximumAttempts: 5, nonRetryableErrorTypes: ['BadInput'] },
});

/**
 * `entropo tasks validate`: grade every instance's gold patch and empty patch in parallel sandboxes and
 * keep the instances where gold resolves and empty does not.
 *   1. check the run config (every bad field named) and load the instances into the artifact store;
 *   2. one child workflow per (instance, patch), at most `grading.concurrency` at once;
 *   3. write the validation report.
 * Finished gradings are recorded in history, so a run resumed after a crash never grades them again.
 */
export async function validateTasksWorkflow(input: unknown): Promise<ValidateTasksResult> {
  const checked = checkRunConfig(input);
  const runId = checked.config?.runId ?? workflowInfo().workflowId;
  // Tagged before a bad config is rejected, so that the failed run shows in `entropo list` and the UI's
  // stage filter. Histories from before this change rejected a bad config with no tag.
  if (checked.config || patched('tag-run-before-config-check')) {
    upsertSearchAttributes({ EntropoRunId: [runId], EntropoStage: ['validate'] });
  }
  const config = acceptedConfig(checked);
  const progress: ValidationProgress = {
    runId,
    stage: 'loading',
    instances: 0,
    gradingsTotal: 0,
    gradingsDone: 0,
    valid: 0,
    invalid: 0,
    errors: 0,
  };
  setHandler(validationProgressQuery, () => progress);

  const instances = await loadInstances(config.instances);
  progress.instances = instances.length;
  progress.gradingsTotal = instances.length * 2;
  progress.stage = 'grading';

  const jobs = instances.flatMap((instance) =>
    (['gold', 'empty'] as const).map((patch) => ({ ...instance, patch })),
  );
  const outcomes = await mapWithConcurrency(jobs, config.grading.concurrency, async (job) => {
    let outcome: GradingOutcome;
    try {
      outcome = await executeChild(gradeInstanceWorkflow, {
        workflowId: `${workflowInfo().workflowId}/grade/${job.instanceId}/${job.patch}`,
        args: [
          {
            runId,
            instanceId: job.instanceId,
            instanceRef: job.instanceRef,
            patch: { kind: job.patch },
            sandbox: config.sandbox,
            testTimeoutSec: config.grading.testTimeoutSec,
          },
        ],
      });
    } catch (err) {
      // One broken instance must not stop the run: record why and go on.
      outcome = failureOf(err);
    }
    progress.gradingsDone++;
    return outcome;
  });

  const verdicts: InstanceVerdict[] = instances.map((instance, i) =>
    verdictFor(instance.instanceId, outcomes[2 * i]!, outcomes[2 * i + 1]!),
  );
  progress.valid = verdicts.filter((v) => v.outcome === 'valid').length;
  progress.invalid = verdicts.filter((v) => v.outcome === 'invalid').length;
  progress.errors = verdicts.filter((v) => v.outcome === 'error').length;
  progress.stage = 'reporting';
  const report = await writeValidationReport(runId, verdicts);
  progress.stage = 'done';
  return {
    runId,
    instances: verdicts.length,
    valid: verdicts.filter((v) => v.valid).map((v) => v.instanceId),
    invalid: verdicts
      .filter((v) => v.outcome === 'invalid')
      .map((v) => ({ instanceId: v.instanceId, problem: v.problem ?? '' })),
    errors: verdicts
      .filter((v) => v.outcome === 'error')
      .map((v) => ({ instanceId: v.instanceId, cause: v.problem ?? '' })),
    report,
  };
}

/** The checked config, or a non-retryable failure naming every bad field (as `config-check` does). */
function acceptedConfig({ config, problems }: RunConfigCheck<ValidateRunConfig>): ValidateRunConfig {
  if (config) return config;
  throw ApplicationFailure.nonRetryable(
    describeProblems('run config', problems),
    'InvalidRunConfig',
    problems,
  );
}

/**
 * The innermost failure (child → activity → application failure or timeout): its message, and its type,
 * which tells a broken task from infrastructure that failed.
 */
function failureOf(err: unknown): GradingFailure {
  const current = innermostCause(err);
  const failure: GradingFailure = { error: rootMessage(err) };
  if (current instanceof ApplicationFailure) failure.errorType = current.type ?? 'Error';
  else if (current instanceof TimeoutFailure) failure.errorType = 'TimeoutFailure';
  else if (current instanceof Error) failure.errorType = current.name;
  return failure;
}
