import * as fs from 'node:fs';
import * as path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { describe, expect, it } from 'vitest';
import { ArtifactStore } from '../../activities/artifacts';
import { putDirectory } from '../../activities/directorySnapshots';
import { type EngineJobResult, engineJobDir, runEngineJob } from '../../activities/engine';
import { isolatedHome } from '../helpers/env';

// The real engine (Python, SmolLM2-135M from the shipped GGUF) run by the gpu role's activity.
describe('runEngineJob', () => {
  const home = isolatedHome('engine-job');
  const store = new ArtifactStore();
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
  /** Four SFT steps, a checkpoint after each; the engine's resume is exact on CPU. */
  const fourSteps = (jobId: string) => ({
    command: 'train' as const,
    jobId,
    config: {
      mode: 'sft',
      model: modelSpec(),
      data: { path: dataFile() },
      optim: { batch_size: 1, max_steps: 4, lr: 1e-3 },
      checkpoint_every: 1,
    },
  });
  const eventsOf = (jobId: string) =>
    fs
      .readFileSync(path.join(engineJobDir(jobId), 'events.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { event: string; step?: number });
  const adapterFiles = (jobId: string) => path.join(engineJobDir(jobId), 'out', 'adapter');

  it('a job whose worker and disk are lost resumes from the checkpoint in the artifact store, to the same adapter', async () => {
    const reference: EngineJobResult = await new MockActivityEnvironment().run(
      runEngineJob,
      fourSteps('whole'),
    );
    expect(reference.adapterId).toMatch(/^sha256:/);
    expect(reference.adapterId).toBe((await putDirectory(store, adapterFiles('whole'))).id);

    // Stopped once a checkpoint is stored; then its disk is gone (another machine picks the job up).
    const env = new MockActivityEnvironment();
    const stopped = env.run(runEngineJob, fourSteps('moved')).catch((e: unknown) => e);
    const record = () =>
      store.getRecord<{ step: number }>(`engine-checkpoint/${env.context.info.namespace}/moved`);
    while (!(await record())) await new Promise((r) => setTimeout(r, 100));
    env.cancel();
    await stopped;
    const storedStep = (await record())!.value.step;
    expect(storedStep).toBeGreaterThanOrEqual(1);
    expect(storedStep).toBeLessThan(4);
    fs.rmSync(engineJobDir('moved'), { recursive: true });

    const moved: EngineJobResult = await new MockActivityEnvironment().run(runEngineJob, fourSteps('moved'));
    const events = eventsOf('moved');
    expect(events.find((e) => e.event === 'resumed')?.step).toBeGreaterThanOrEqual(storedStep);
    expect(events.filter((e) => e.event === 'step').map((e) => e.step)[0]).toBeGreaterThan(storedStep);
    expect(moved.adapterId).toBe(reference.adapterId);
  });

  it('a finished job is not run again: its recorded result is returned and its adapter restored from the store', async () => {
    const before = eventsOf('whole').length;
    fs.rmSync(adapterFiles('whole'), { recursive: true });
    const again: EngineJobResult = await new MockActivityEnvironment().run(runEngineJob, fourSteps('whole'));
    expect(eventsOf('whole')).toHaveLength(before);
    expect((await putDirectory(store, adapterFiles('whole'))).id).toBe(again.adapterId);
  });
});
