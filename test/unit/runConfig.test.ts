import { describe, expect, it } from 'vitest';
import { checkRunConfig, type RunConfigCheckOptions, validateRunConfig } from '../../domain/runConfig';
import { InvalidInputError } from '../../domain/schemaErrors';

describe('validateRunConfig', () => {
  it('fills defaults', () => {
    const config = validateRunConfig({ instances: 'x.jsonl' });
    expect(config.grading.concurrency).toBe(2);
    expect(config.sandbox.backend).toBe('local');
    expect(config.sandbox.commandTimeoutSec).toBe(120);
    expect(config.sandbox.limits).toEqual({ memoryMb: 2048, cpus: 1, pids: 512 });
    expect(config.sandbox.docker).toEqual({ workdir: '/testbed', readOnlyRootfs: true, tmpfsMb: 512 });
  });

  it('takes the docker backend, its engine address and limits, and names bad ones', () => {
    const config = validateRunConfig({
      instances: 'x.jsonl',
      sandbox: { backend: 'docker', limits: { memoryMb: 512 }, docker: { host: 'tcp://box:2375' } },
    });
    expect(config.sandbox.backend).toBe('docker');
    expect(config.sandbox.limits.memoryMb).toBe(512);
    expect(config.sandbox.docker.host).toBe('tcp://box:2375');
    let error: InvalidInputError | undefined;
    try {
      validateRunConfig({
        instances: 'x.jsonl',
        sandbox: { limits: { pids: 1, cpu: 2 }, docker: { host: 'box:2375', workdir: 'testbed' } },
      });
    } catch (e) {
      error = e as InvalidInputError;
    }
    expect(error!.problems.map((p) => p.field).sort()).toEqual([
      'sandbox.docker.host',
      'sandbox.docker.workdir',
      'sandbox.limits.cpu',
      'sandbox.limits.pids',
    ]);
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

describe('checkRunConfig: one answer for config-check, tasks validate --config and the workflow', () => {
  const messages = (document: unknown, options?: RunConfigCheckOptions) =>
    checkRunConfig(document, options).problems.map((p) => `${p.field || '(document)'}: ${p.message}`);

  it('says an empty or null document is empty, and a list or scalar is not a mapping', () => {
    for (const empty of [null, undefined]) {
      expect(messages(empty, { file: 'run.yaml' })).toEqual([
        expect.stringMatching(/^\(document\): the document is empty; a run config is a mapping/),
      ]);
    }
    expect(messages([{ instances: 'x.jsonl' }])).toEqual([
      expect.stringMatching(/^\(document\): must be a mapping of fields .*not a list$/),
    ]);
    expect(messages('instances: x')).toEqual([expect.stringMatching(/not a string$/)]);
    // With command-line options too: never their fields spread over a list, never a crash.
    expect(
      messages(null, {
        instances: '/abs/x.jsonl',
        overrides: [{ field: 'grading.concurrency', value: 3, option: '--concurrency' }],
      }),
    ).toEqual([expect.stringMatching(/the document is empty/)]);
  });

  it('rejects a section that is not a mapping, whatever options fill it', () => {
    const overrides = [
      { field: 'grading.concurrency', value: 3, option: '--concurrency' },
      { field: 'sandbox.backend', value: 'local', option: '--backend' },
    ];
    for (const grading of [5, 'fast', null, ['a']]) {
      const document = { instances: 'x.jsonl', grading };
      for (const options of [{}, { instances: 'x.jsonl', overrides }]) {
        const { config, problems } = checkRunConfig(document, options);
        expect(config).toBeUndefined();
        expect(problems).toEqual([
          { field: 'grading', message: expect.stringMatching(/^expected a mapping of fields, got /) },
        ]);
      }
    }
  });

  it('applies command-line options over the document and names the option of a bad value', () => {
    const { config } = checkRunConfig(
      { grading: { concurrency: 1, testTimeoutSec: 60 } },
      {
        file: 'run.yaml',
        instances: 'x.jsonl',
        overrides: [{ field: 'grading.concurrency', value: 4, option: '--concurrency' }],
      },
    );
    expect(config!.instances).toBe('x.jsonl');
    expect(config!.grading).toEqual({ concurrency: 4, testTimeoutSec: 60 });
    const { problems } = checkRunConfig(
      { sandbox: { commandTimeoutSec: 0 } },
      {
        file: 'run.yaml',
        instances: 'x.jsonl',
        overrides: [{ field: 'sandbox.backend', value: 'vm', option: '--backend' }],
      },
    );
    expect(problems).toEqual([
      expect.objectContaining({
        field: 'sandbox.backend',
        message: expect.stringContaining('(from --backend vm)'),
      }),
      expect.objectContaining({ file: 'run.yaml', field: 'sandbox.commandTimeoutSec' }),
    ]);
    expect(problems[0]!.file).toBeUndefined();
  });

  it("reports a config's instances that the command line contradicts, and accepts one that agrees", () => {
    const resolvePath = (f: string) => (f.startsWith('/') ? f : `/work/${f}`);
    const { problems } = checkRunConfig(
      { instances: 'other.jsonl' },
      { file: 'run.yaml', instances: '/work/tasks/a/instances.jsonl', resolvePath },
    );
    expect(problems).toEqual([
      {
        file: 'run.yaml',
        field: 'instances',
        message: expect.stringMatching(
          /names other\.jsonl but the command line names \/work\/tasks\/a\/instances\.jsonl/,
        ),
      },
    ]);
    const same = checkRunConfig({ instances: 'a.jsonl' }, { instances: '/work/a.jsonl', resolvePath });
    expect(same.problems).toEqual([]);
    expect(same.config!.instances).toBe('/work/a.jsonl');
  });

  it('accepts a config meant for --config (no instances) only where asked to', () => {
    const document = { grading: { concurrency: 3 } };
    const forCheck = checkRunConfig(document, { instancesOptional: true });
    expect(forCheck.problems).toEqual([]);
    expect(forCheck.config!.instances).toBeUndefined();
    expect(forCheck.config!.grading.concurrency).toBe(3);
    expect(messages(document)).toEqual(['instances: Invalid input: expected string, the field is missing']);
  });
});
