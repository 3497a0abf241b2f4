import { describe, expect, it } from 'vitest';
import type { GradeSummary } from '../../domain/grading';
import { queuePrefixOf, roleQueue, sandboxWorkerQueue } from '../../domain/taskQueues';
import { formatValidationProgress, renderValidationMarkdown, verdictFor } from '../../domain/validation';
import { mapWithConcurrency } from '../../workflows/concurrency';

const grade = (resolved: boolean, reason?: string): GradeSummary => ({
  instanceId: 'i',
  patch: 'gold',
  resolved,
  appliedWith: 'git apply',
  reportId: 'sha256:x',
  durationMs: 1500,
  ...(reason ? { reason } : {}),
});

describe('verdictFor', () => {
  it('is valid only when gold resolves and empty does not', () => {
    expect(verdictFor('i', grade(true), grade(false)).valid).toBe(true);
    expect(verdictFor('i', grade(false, 'patch did not apply'), grade(false)).problem).toBe(
      'gold patch does not resolve (patch did not apply)',
    );
    expect(verdictFor('i', grade(true), grade(true)).problem).toMatch(/empty patch already resolves/);
    const broken = verdictFor('i', { error: 'no source', errorType: 'InvalidInstance' }, grade(false));
    expect(broken.valid).toBe(false);
    expect(broken.outcome).toBe('invalid');
    expect(broken.problem).toBe('gold grading failed: no source');
  });

  it('tells instances that could not be judged from broken tasks by the failure type', () => {
    const missingImage = { error: 'image entropo/task-x is missing', errorType: 'DockerImageMissingError' };
    for (const failure of [
      missingImage,
      { error: 'container did not start', errorType: 'SandboxStartError' },
      { error: 'bwrap not found', errorType: 'BwrapMissingError' },
      { error: 'activity Heartbeat timeout', errorType: 'TimeoutFailure' },
      { error: 'ECONNREFUSED', errorType: 'Error' },
      { error: 'an error of unknown kind' },
    ]) {
      const verdict = verdictFor('i', failure, grade(false));
      expect(verdict.outcome, failure.error).toBe('error');
      expect(verdict.valid).toBe(false);
      expect(verdict.problem).toBe(`gold grading could not run: ${failure.error}`);
    }
    expect(verdictFor('i', grade(true), missingImage).outcome).toBe('error');
    // A task fault or a finished grading proves the task broken whatever else failed.
    const noBase = {
      error: 'base commit abc1234 is not in the repository',
      errorType: 'BaseCommitMissingError',
    };
    expect(verdictFor('i', noBase, grade(false)).outcome).toBe('invalid');
    const both = verdictFor('i', grade(false, 'patch did not apply'), missingImage);
    expect(both.outcome).toBe('invalid');
    expect(both.problem).toBe(
      'gold patch does not resolve (patch did not apply); empty-patch grading could not run: image entropo/task-x is missing',
    );
    expect(verdictFor('i', missingImage, grade(true)).outcome).toBe('invalid');
    expect(verdictFor('i', grade(true), grade(false)).outcome).toBe('valid');
  });

  it('renders a markdown table and a progress line', () => {
    const md = renderValidationMarkdown('r', [verdictFor('i', grade(true), grade(false))]);
    expect(md).toContain('1 of 1 instances valid');
    expect(md).toContain('| i | valid | resolved (1.5s) | unresolved (1.5s) |  |');
    const line = formatValidationProgress(
      {
        runId: 'r',
        stage: 'grading',
        instances: 2,
        gradingsTotal: 4,
        gradingsDone: 1,
        valid: 0,
        invalid: 0,
      },
      8,
    );
    expect(line).toBe('grading   [##------] 1/4 gradings · 2 instances');
    const done = { runId: 'r', stage: 'done', instances: 3, gradingsTotal: 6, gradingsDone: 6 } as const;
    expect(formatValidationProgress({ ...done, valid: 1, invalid: 1, errors: 1 }, 4)).toBe(
      'done      [####] 6/6 gradings · 3 instances · 1 valid, 1 invalid, 1 could not be judged',
    );
    expect(formatValidationProgress({ ...done, valid: 2, invalid: 1, errors: 0 }, 4)).toBe(
      'done      [####] 6/6 gradings · 3 instances · 2 valid, 1 invalid',
    );
    const unjudged = renderValidationMarkdown('r', [
      verdictFor('i', { error: 'image missing', errorType: 'DockerImageMissingError' }, grade(false)),
    ]);
    expect(unjudged).toContain('0 of 1 instances valid');
    expect(unjudged).toContain('1 could not be judged (infrastructure errors, not task verdicts');
    expect(md).not.toContain('could not be judged');
  });
});

describe('mapWithConcurrency', () => {
  it('keeps order and never exceeds the limit', async () => {
    let inFlight = 0;
    let peak = 0;
    const results = await mapWithConcurrency([5, 1, 4, 2, 3], 2, async (n) => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      await new Promise((r) => setTimeout(r, n * 3));
      inFlight--;
      return n * 10;
    });
    expect(results).toEqual([50, 10, 40, 20, 30]);
    expect(peak).toBe(2);
  });
});

describe('task queues', () => {
  it('derives role and worker-specific queues from a prefix', () => {
    expect(roleQueue('p', 'sandbox')).toBe('p-sandbox');
    expect(sandboxWorkerQueue('p', 'host-1')).toBe('p-sandbox@host-1');
    expect(queuePrefixOf('my-test-cpu')).toBe('my-test');
    expect(queuePrefixOf('replay-0')).toBe('replay-0');
  });
});
