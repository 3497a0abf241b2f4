import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArtifactStore } from '../../activities/artifacts';
import { type ManagedEngineServer, startEngineServer } from '../../activities/engineServer';
import { EXIT_REASONS, episodeLimitsSchema } from '../../domain/agent/limits';
import type { TrajectoryRecord } from '../../domain/agent/trajectory';
import { samplingSchema } from '../../domain/llmPolicy';
import { sandboxConfigSchema } from '../../domain/runConfig';
import type { RolloutInput, RolloutResult } from '../../workflows/rollout';
import { FIXTURE_REPO, fixtureInstances, isolatedHome } from '../helpers/env';
import { startTestTemporal, startTestWorkers, type TestTemporal } from '../helpers/temporal';

/**
 * The default policy for real: SmolLM2-135M served by the engine (a managed process), through the openai
 * client, in a durable rollout on a real sandbox. The tiny model is not expected to resolve anything; the
 * episode must run through the real parser and tools to a real exit reason.
 */

const home = isolatedHome('rollout-engine');
const PREFIX = 'rollout-engine';
let temporal: TestTemporal;
let workers: Awaited<ReturnType<typeof startTestWorkers>>;
let engine: ManagedEngineServer;

beforeAll(async () => {
  engine = await startEngineServer({ dir: home });
  temporal = await startTestTemporal(home);
  workers = await startTestWorkers(temporal.address, PREFIX, ['cpu', 'sandbox', 'llm']);
});
afterAll(async () => {
  await workers?.stop();
  await temporal?.close();
  await engine?.stop();
});

describe('a rollout of the real SmolLM2-135M', () => {
  it('runs at least 10 steps of the real model through the parser and tools to an exit reason', async () => {
    const store = new ArtifactStore();
    const instance = fixtureInstances()[0]!;
    const { id: instanceRef } = await store.putJson({
      ...instance,
      source: { kind: 'git', path: FIXTURE_REPO },
    });
    const input: RolloutInput = {
      runId: 'engine',
      instanceId: String(instance.instance_id),
      instanceRef,
      policy: {
        kind: 'openai',
        name: engine.model,
        endpoint: { baseUrl: engine.baseUrl, model: engine.model, requestTimeoutSec: 1800, maxRetries: 2 },
      },
      sampling: samplingSchema.parse({ temperature: 0.7, topP: 0.8, topK: 20, maxTokens: 96 }),
      seed: 11,
      limits: episodeLimitsSchema.parse({ maxSteps: 10 }),
      sandbox: sandboxConfigSchema.parse({}),
      testTimeoutSec: 600,
    };
    const result = (await temporal.client.workflow.execute('rolloutWorkflow', {
      taskQueue: `${PREFIX}-cpu`,
      workflowId: 'rollout/smollm2',
      args: [input],
    })) as RolloutResult;
    expect(EXIT_REASONS).toContain(result.exitReason);
    expect(['llm_error', 'sandbox_error']).not.toContain(result.exitReason);
    const record = await store.getJson<TrajectoryRecord>(result.trajectoryId);
    // Each step is the model's own text, read by the real parser: a tool ran or a format error was observed.
    const observed = record.steps.filter((s) => s.observationId !== null);
    expect(observed.length).toBeGreaterThanOrEqual(5);
    for (const step of record.steps) {
      expect(step.tokensOut).toBeGreaterThan(0);
      expect(step.tokensIn).toBeGreaterThan(500); // the system prompt and the task, at least
      expect(step.call !== null || step.error !== undefined).toBe(true);
    }
    // The conversation grew turn by turn: every later call re-sent more.
    const ins = record.steps.map((s) => s.tokensIn);
    expect(ins.slice(1).every((n, i) => n > ins[i]!)).toBe(true);
  });
});
