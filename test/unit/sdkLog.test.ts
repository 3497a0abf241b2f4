import { ActivityFailure, ApplicationFailure, RetryState } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { formatSdkLogEntry } from '../../cli/sdkLog';

describe('formatSdkLogEntry', () => {
  it("names the activity, workflow and attempt of a failed activity, and the error's message and type", () => {
    const error = ApplicationFailure.nonRetryable(
      'base commit deadbeef is not in the repository',
      'BadInput',
    );
    const line = formatSdkLogEntry({
      level: 'WARN',
      message: 'Activity failed',
      // The metadata the SDK's activity logger attaches (activityLogAttributes) plus the failure.
      meta: {
        isLocal: false,
        attempt: 2,
        namespace: 'default',
        activityId: '1',
        activityType: 'createSandbox',
        taskQueue: 'entropo-sandbox',
        workflowId: 'validate/r/grade/i/gold',
        workflowRunId: 'abc',
        workflowType: 'gradeInstanceWorkflow',
        error,
        durationMs: 12,
      },
    });
    expect(line).toBe(
      '[temporal WARN] Activity failed (activity createSandbox, workflow validate/r/grade/i/gold, attempt 2): ' +
        'base commit deadbeef is not in the repository [BadInput]',
    );
  });

  it('gives the innermost cause of a failed workflow, not the wrapper', () => {
    const cause = ApplicationFailure.create({ message: 'no sandbox worker', type: 'SandboxUnavailable' });
    const error = new ActivityFailure(
      'Activity task failed',
      'createSandbox',
      '1',
      RetryState.MAXIMUM_ATTEMPTS_REACHED,
      undefined,
      cause,
    );
    const line = formatSdkLogEntry({
      level: 'WARN',
      message: 'Workflow failed',
      meta: { workflowId: 'validate/r', workflowType: 'validateTasksWorkflow', error },
    });
    expect(line).toBe(
      '[temporal WARN] Workflow failed (workflow validate/r, type validateTasksWorkflow): no sandbox worker [SandboxUnavailable]',
    );
  });

  it("keeps plain lines plain and drops the SDK's notices about roles a worker does not serve", () => {
    expect(formatSdkLogEntry({ level: 'WARN', message: 'Connection lost' })).toBe(
      '[temporal WARN] Connection lost',
    );
    expect(
      formatSdkLogEntry({ level: 'WARN', message: 'No workflows registered, not polling' }),
    ).toBeUndefined();
  });
});
