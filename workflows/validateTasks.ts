import {
  ApplicationFailure,
  defineQuery,
  executeChild,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { CpuActivities } from '../activities';
import type { GradeSummary } from '../domain/grading';
import { type ValidateRunConfig, validateRunConfigSchema } from '../domain/runConfig';
import { describeProblems, problemsFromZod } from '../domain/schemaErrors';
import { type InstanceVerdict, type ValidationProgress, verdictFor } from '../domain/validation';
import { mapWithConcurrency } from './concurrency';
import { gradeInstanceWorkflow } from './gradeInstance';

export const validationProgressQuery = defineQuery<ValidationProgress>('progress');

export interface ValidateTasksResult {
  runId: string;
  instances: number;
  valid: string[];
  invalid: { instanceId: string; problem: string }[];
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
  const config = parseConfig(input);
  const runId = config.runId ?? workflowInfo().workflowId;
  upsertSearchAttributes({ EntropoRunId: [runId], EntropoStage: ['validate'] });
  const progress: ValidationProgress = {
    runId,
    stage: 'loading',
    instances: 0,
    gradingsTotal: 0,
    gradingsDone: 0,
    valid: 0,
    invalid: 0,
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
    let outcome: GradeSummary | { error: string };
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
      outcome = { error: rootMessage(err) };
    }
    progress.gradingsDone++;
    return outcome;
  });

  const verdicts: InstanceVerdict[] = instances.map((instance, i) =>
    verdictFor(instance.instanceId, outcomes[2 * i]!, outcomes[2 * i + 1]!),
  );
  progress.valid = verdicts.filter((v) => v.valid).length;
  progress.invalid = verdicts.length - progress.valid;
  progress.stage = 'reporting';
  const report = await writeValidationReport(runId, verdicts);
  progress.stage = 'done';
  return {
    runId,
    instances: verdicts.length,
    valid: verdicts.filter((v) => v.valid).map((v) => v.instanceId),
    invalid: verdicts
      .filter((v) => !v.valid)
      .map((v) => ({ instanceId: v.instanceId, problem: v.problem ?? '' })),
    report,
  };
}

function parseConfig(input: unknown): ValidateRunConfig {
  const result = validateRunConfigSchema.safeParse(input);
  if (result.success) return result.data;
  const problems = problemsFromZod(result.error);
  throw ApplicationFailure.nonRetryable(
    describeProblems('run config', problems),
    'InvalidRunConfig',
    problems,
  );
}

/** The innermost failure message (child → activity → application failure). */
function rootMessage(err: unknown): string {
  let current = err as { message?: string; cause?: unknown } | undefined;
  while (current?.cause) current = current.cause as { message?: string; cause?: unknown };
  return current?.message ?? String(err);
}
