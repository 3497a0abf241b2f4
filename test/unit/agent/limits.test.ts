import { describe, expect, it } from 'vitest';
import { type EpisodeProgress, episodeLimitsSchema, nextStep } from '../../../domain/agent/limits';

const limits = episodeLimitsSchema.parse({
  maxSteps: 10,
  warnStepsRemaining: 3,
  maxContextTokens: 1000,
  maxGeneratedTokens: 5000,
  commandTimeoutSec: 60,
  maxWallSec: 600,
});
const progress = (over: Partial<EpisodeProgress> = {}): EpisodeProgress => ({
  steps: 1,
  lastContextTokens: 100,
  generatedTokens: 50,
  elapsedMs: 1000,
  ...over,
});

describe('nextStep', () => {
  it('goes on, with the command timeout and what is left of time and tokens', () => {
    expect(nextStep(limits, progress(), 'observed')).toEqual({
      kind: 'continue',
      warning: null,
      commandTimeoutSec: 60,
      llmTimeoutMs: 599_000,
      generatedTokensLeft: 4950,
    });
  });

  it('warns when few steps remain, the last one plainly', () => {
    const warning = (steps: number) => {
      const next = nextStep(limits, progress({ steps }), 'observed');
      return next.kind === 'continue' ? next.warning : `exit ${next.reason}`;
    };
    expect(warning(6)).toBeNull();
    expect(warning(7)).toBe(
      'Steps remaining: 3. Make sure your fix is in place and call finish before you run out of steps.',
    );
    expect(warning(9)).toBe(
      'Steps remaining: 1. This is your last step: if your fix is in place, call finish now.',
    );
    expect(warning(10)).toBe('exit step_limit');
  });

  it('a command may not outlast the episode', () => {
    const next = nextStep(limits, progress({ elapsedMs: 590_500 }), 'observed');
    expect(next).toMatchObject({ kind: 'continue', commandTimeoutSec: 9, llmTimeoutMs: 9500 });
  });

  it('each exit reason', () => {
    const reason = (p: Partial<EpisodeProgress>, outcome: Parameters<typeof nextStep>[2] = 'observed') => {
      const next = nextStep(limits, progress(p), outcome);
      return next.kind === 'exit' ? next.reason : 'continue';
    };
    expect(reason({}, 'submitted')).toBe('submitted');
    expect(reason({}, 'llm_error')).toBe('llm_error');
    expect(reason({}, 'sandbox_error')).toBe('sandbox_error');
    expect(reason({}, 'context_length_exceeded')).toBe('token_limit');
    expect(reason({ lastContextTokens: 1000 })).toBe('token_limit');
    expect(reason({ generatedTokens: 5000 })).toBe('token_limit');
    expect(reason({ elapsedMs: 600_000 })).toBe('time_limit');
    expect(reason({ steps: 10 })).toBe('step_limit');
  });

  it('a submission on the last step counts; tokens, then time, then steps when several limits are hit', () => {
    const all = progress({ steps: 10, elapsedMs: 600_000, lastContextTokens: 2000 });
    expect(nextStep(limits, all, 'submitted')).toEqual({ kind: 'exit', reason: 'submitted' });
    expect(nextStep(limits, all, 'observed')).toEqual({ kind: 'exit', reason: 'token_limit' });
    expect(nextStep(limits, { ...all, lastContextTokens: 0 }, 'observed')).toEqual({
      kind: 'exit',
      reason: 'time_limit',
    });
  });
});

describe('episodeLimitsSchema', () => {
  it('has defaults and names bad fields', () => {
    expect(episodeLimitsSchema.parse({}).maxSteps).toBe(200);
    const bad = episodeLimitsSchema.safeParse({ maxSteps: 0, stepz: 1 });
    expect(bad.success).toBe(false);
    expect(bad.error!.issues.map((i) => i.path.join('.') || i.code)).toEqual([
      'maxSteps',
      'unrecognized_keys',
    ]);
  });
});
