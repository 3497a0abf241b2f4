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
    const broken = verdictFor('i', { error: 'no source' }, grade(false));
    expect(broken.valid).toBe(false);
    expect(broken.problem).toBe('gold grading failed: no source');
  });

  it('renders a markdown table and a progress line', () => {
    const md = renderValidationMarkdown('r', [verdictFor('i', grade(true), grade(false))]);
    expect(md).toContain('1 of 1 instances valid');
    expect(md).toContain('| i | yes | resolved (1.5s) | unresolved (1.5s) |  |');
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
