import * as fs from 'node:fs';
import * as path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { describe, expect, it } from 'vitest';
import { type EngineJobResult, runEngineJob } from '../../activities/engine';
import { isolatedHome } from '../helpers/env';

// The real engine (Python, SmolLM2-135M from the shipped GGUF) run by the gpu role's activity.
describe('runEngineJob', () => {
  const home = isolatedHome('engine-job');
  // Reuse the converted model of the project's .entropo (conversion takes ~20 s), not the isolated home's.
  const modelDirs = path.join(__dirname, '..', '..', '.entropo', 'models');

  function dataFile(): string {
    const file = path.join(home, 'sft.jsonl');
    const turn = (i: number) => [
      { role: 'system', content: 'You are a coding agent.' },
      { role: 'user', content: `Fix bug ${i}.` },
      { role: 'assistant', content: `<function=bash>grep -n bug${i} src/</function>` },
      { role: 'tool', content: `src/a.py:${i}: bug${i}` },
      { role: 'assistant', content: '<function=submit></function>' },
    ];
    fs.writeFileSync(file, [0, 1].map((i) => JSON.stringify({ id: `t${i}`, messages: turn(i) })).join('\n'));
    return file;
  }

  function modelSpec(): string {
    const converted = fs.existsSync(modelDirs)
      ? fs.readdirSync(modelDirs).find((d) => d.startsWith('SmolLM2-135M') && !d.includes('.tmp'))
      : undefined;
    return converted ? path.join(modelDirs, converted) : 'smollm2-135m';
  }

  it('trains, heartbeats progress and returns the last event', async () => {
    const env = new MockActivityEnvironment();
    const heartbeats: unknown[] = [];
    env.on('heartbeat', (d: unknown) => heartbeats.push(d));
    const out = path.join(home, 'sft-out');
    const result: EngineJobResult = await env.run(runEngineJob, {
      command: 'train' as const,
      jobId: 'sft-test',
      config: {
        mode: 'sft',
        model: modelSpec(),
        output_dir: out,
        data: { path: dataFile() },
        optim: { batch_size: 2, max_steps: 2, lr: 1e-3 },
      },
    });
    expect(result.last?.event).toBe('done');
    expect(fs.existsSync(path.join(out, 'adapter', 'adapter_model.safetensors'))).toBe(true);
    const events = fs.readFileSync(path.join(result.jobDir, 'events.jsonl'), 'utf8').trim().split('\n');
    expect(events.filter((l) => JSON.parse(l).event === 'step')).toHaveLength(2);
    expect(heartbeats.length).toBeGreaterThan(0);
  });

  it('fails without retry on a bad config, naming the field', async () => {
    const env = new MockActivityEnvironment();
    const failure = await env
      .run(runEngineJob, {
        command: 'train' as const,
        jobId: 'bad-config',
        config: { mode: 'entropo-dpo', output_dir: path.join(home, 'x'), data: { path: 'x' }, beta: -1 },
      })
      .catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(ApplicationFailure);
    expect((failure as ApplicationFailure).nonRetryable).toBe(true);
    expect((failure as ApplicationFailure).type).toBe('EngineInvalidInput');
    expect((failure as ApplicationFailure).message).toContain('beta');
  });
});
