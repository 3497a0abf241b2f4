import { describe, expect, it } from 'vitest';
import { entropoJob, sftJob, verifierJob } from '../../domain/engineJobs';
import {
  canonicalJson,
  configHash,
  InvalidPipelineConfigError,
  parsePipelineConfig,
  stageKey,
} from '../../domain/pipelineConfig';

const minimal = { suites: { train: 'tasks/quickstart/instances.jsonl', test: 'tasks/test/instances.jsonl' } };

describe('parsePipelineConfig', () => {
  it('fills in the paper defaults (DESIGN.md §6–7)', () => {
    const config = parsePipelineConfig(minimal);
    expect(config.entropo).toMatchObject({ mode: 'dpo', beta: 0.1, lambda: 0.01 });
    expect(config.entropo.train).toMatchObject({ lr: 1e-5, warmupRatio: 0.1, epochs: 1, maxLength: 18_432 });
    expect(config.entropo.train.lora).toEqual({ rank: 8, alpha: 16, dropout: 0 });
    expect(config.tts.n).toBe(16);
    expect(config.tts.sampling).toMatchObject({ temperature: 0.7, topP: 0.8, topK: 20 });
    expect(config.selector).toEqual({ eta: 0.01, prefer: 'most-steps', regressionCheck: true });
    expect(config.serving).toEqual({ kind: 'engine', runtime: 'torch' });
    expect(config.teacher).toEqual({ kind: 'demonstrator' });
    expect(config.baselines).toEqual([]);
    expect(parsePipelineConfig({ ...minimal, baselines: ['lambda0', 'sft', 'base'] }).baselines).toEqual([
      'lambda0',
      'sft',
      'base',
    ]);
  });

  it('lists every bad field at once, each by its path', () => {
    let message = '';
    try {
      parsePipelineConfig({
        suites: { train: 'a.jsonl' },
        entropo: { mode: 'ipo', beta: -1 },
        tts: { n: 0, sampling: { temperature: 'hot' } },
        selector: { eta: 2 },
        baselines: ['sft', 'lambda0', 'gpt-5'],
        serving: { kind: 'command', baseUrl: 'not a url' },
        colour: 'blue',
      });
    } catch (e) {
      expect(e).toBeInstanceOf(InvalidPipelineConfigError);
      message = (e as Error).message;
    }
    for (const field of [
      'suites.test',
      'entropo.mode',
      'entropo.beta',
      'tts.n',
      'tts.sampling.temperature',
      'selector.eta',
      'baselines[2]',
      'serving.command',
      'serving.baseUrl',
      'colour',
    ])
      expect(message).toContain(field);
  });
});

describe('stage keys', () => {
  it('do not depend on key order, and change with any value', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { y: 2, x: 1 }], c: null } })).toBe(
      '{"a":{"c":null,"d":[1,{"x":1,"y":2}]},"b":1}',
    );
    expect(configHash({ a: 1, b: 2 })).toBe(configHash({ b: 2, a: 1 }));
    expect(configHash({ a: 1, b: 2 })).not.toBe(configHash({ a: 1, b: 3 }));
    expect(configHash({ a: 1 })).toMatch(/^[0-9a-f]{16}$/);
    const key = stageKey('r1', 'pairing', { maxPairsPerTask: 4 }, { sources: ['x'] });
    expect(key).toMatch(/^r1\/pairing\/[0-9a-f]{16}$/);
    expect(stageKey('r1', 'pairing', { maxPairsPerTask: 4 }, { sources: ['y'] })).not.toBe(key);
  });
});

describe('engine job configs', () => {
  const config = parsePipelineConfig({
    ...minimal,
    entropo: { mode: 'kto', lambda: 0.5, train: { maxSteps: 8, batchSize: 2, compileLayers: true } },
    sft: { train: { maxSteps: 3 } },
  });

  it('SFT and the verifier start from the base model; EntroPO from the SFT adapter, its reference', () => {
    expect(sftJob(config, '/d/sft.jsonl')).toMatchObject({
      mode: 'sft',
      model: 'smollm2-135m',
      data: { path: '/d/sft.jsonl' },
      optim: { max_steps: 3, lr: 1e-4 },
    });
    // Off unless asked for, and then absent: the job config is part of the stage's key.
    expect(sftJob(config, '/d/sft.jsonl')).not.toHaveProperty('compile_layers');
    expect(config.sft.train).not.toHaveProperty('compileLayers');
    expect(entropoJob(config, '/d/kto.jsonl', '/a/sft')).toMatchObject({
      mode: 'entropo-kto',
      init_adapter: '/a/sft',
      beta: 0.1,
      lambda: 0.5,
      optim: { max_steps: 8, batch_size: 2 },
      compile_layers: true,
    });
    expect(entropoJob(config, '/d/kto.jsonl', '/a/sft', 0)).toMatchObject({ lambda: 0 });
    expect(verifierJob(config, '/d/v.jsonl')).toMatchObject({
      mode: 'verifier',
      data: { path: '/d/v.jsonl' },
    });
    expect(verifierJob(config, '/d/v.jsonl')).not.toHaveProperty('init_adapter');
  });
});
