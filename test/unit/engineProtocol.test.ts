import { describe, expect, it } from 'vitest';
import { describeProgress, engineOutcome, parseEngineLine } from '../../domain/engineProtocol';

describe('engine protocol', () => {
  it('parses progress lines and ignores everything else', () => {
    expect(parseEngineLine('{"event": "step", "step": 3, "total_steps": 10, "loss": 0.5}\n')).toEqual({
      event: 'step',
      step: 3,
      total_steps: 10,
      loss: 0.5,
    });
    expect(parseEngineLine('Loading weights: 100%')).toBeUndefined();
    expect(parseEngineLine('{"event": "step", "los')).toBeUndefined();
    expect(parseEngineLine('{"no_event": 1}')).toBeUndefined();
  });

  it('maps exit codes to what the activity should do', () => {
    expect(engineOutcome(0)).toBe('done');
    expect(engineOutcome(2)).toBe('invalid-input');
    expect(engineOutcome(3)).toBe('numerical-failure');
    expect(engineOutcome(1)).toBe('retryable');
    expect(engineOutcome(null)).toBe('retryable'); // killed by a signal
  });

  it('summarises progress for heartbeats', () => {
    expect(describeProgress(undefined)).toBe('starting');
    expect(describeProgress({ event: 'step', step: 2, total_steps: 5, loss: 1.23456 })).toBe(
      'step 2/5 loss 1.2346',
    );
    expect(describeProgress({ event: 'reference', done: 4, total: 8 })).toBe('reference log-probs 4/8');
  });
});
