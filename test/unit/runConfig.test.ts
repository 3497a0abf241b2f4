import { describe, expect, it } from 'vitest';
import { validateRunConfig } from '../../domain/runConfig';
import { InvalidInputError } from '../../domain/schemaErrors';

describe('validateRunConfig', () => {
  it('fills defaults', () => {
    const config = validateRunConfig({ instances: 'x.jsonl' });
    expect(config.grading.concurrency).toBe(2);
    expect(config.sandbox.backend).toBe('local');
    expect(config.sandbox.commandTimeoutSec).toBe(120);
  });

  it('reports every bad field with its path, before any work starts', () => {
    let error: InvalidInputError | undefined;
    try {
      validateRunConfig(
        {
          runId: 'bad id!',
          sandbox: { commandTimeoutSec: -1, backend: 'vm' },
          grading: { concurrency: 0 },
          extra: 1,
        },
        'run.json',
      );
    } catch (e) {
      error = e as InvalidInputError;
    }
    expect(error).toBeInstanceOf(InvalidInputError);
    const fields = error!.problems.map((p) => p.field).sort();
    expect(fields).toEqual([
      'extra',
      'grading.concurrency',
      'instances',
      'runId',
      'sandbox.backend',
      'sandbox.commandTimeoutSec',
    ]);
    expect(error!.message).toContain('run.json: field "sandbox.commandTimeoutSec"');
  });
});
