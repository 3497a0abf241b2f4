import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArtifactStore } from '../../activities/artifacts';
import {
  EngineServerStartError,
  type ManagedEngineServer,
  startEngineServer,
} from '../../activities/engineServer';
import { callPolicy, type PolicyTurn } from '../../activities/llm';
import { llmEndpointSchema, samplingSchema } from '../../domain/llmPolicy';
import { isolatedHome } from '../helpers/env';

/** The default policy: the engine's server with the real SmolLM2-135M, managed by us, through the openai client. */

const home = isolatedHome('engine-policy');
const store = new ArtifactStore();
let server: ManagedEngineServer;

beforeAll(async () => {
  server = await startEngineServer({ dir: home });
});
afterAll(async () => {
  await server?.stop();
});

async function ask(content: string, sampling: Record<string, unknown>, seed?: number): Promise<PolicyTurn> {
  const messagesId = (await store.putJson([{ role: 'user', content }])).id;
  return (await new MockActivityEnvironment().run(
    callPolicy,
    { store },
    {
      endpoint: llmEndpointSchema.parse({ baseUrl: server.baseUrl, model: server.model }),
      sampling: samplingSchema.parse(sampling),
      messagesId,
      seed,
    },
  )) as PolicyTurn;
}

describe('the managed engine server as a policy', () => {
  it('answers a chat turn with the real model; greedy answers repeat; seeded samples repeat', async () => {
    const greedy = { temperature: 0, topP: 1, topK: 0, maxTokens: 12 };
    const a = await ask('Say hello in one word.', greedy);
    const b = await ask('Say hello in one word.', greedy);
    expect(a.kind).toBe('completion');
    if (a.kind !== 'completion' || b.kind !== 'completion') throw new Error('unreachable');
    expect(a.completionTokens).toBeGreaterThan(0);
    expect(a.completionTokens).toBeLessThanOrEqual(12);
    expect(a.promptTokens).toBeGreaterThan(5);
    expect((await store.getText(a.completionId)).length).toBeGreaterThan(0);
    expect(b.completionId).toBe(a.completionId); // same text, same content address

    const sampled = { temperature: 1, topP: 0.95, topK: 50, minP: 0.05, maxTokens: 12 };
    const s1 = await ask('Write a word.', sampled, 1234);
    const s2 = await ask('Write a word.', sampled, 1234);
    if (s1.kind !== 'completion' || s2.kind !== 'completion') throw new Error('unreachable');
    expect(s2.completionId).toBe(s1.completionId);
  });

  it('ends the episode with a context-length signal when the conversation cannot fit', async () => {
    const result = await ask('word '.repeat(20), { temperature: 0, maxTokens: 1_000_000 });
    expect(result.kind).toBe('context_length');
  });

  it('refuses a bad serve config before it is ready, naming the field', async () => {
    const failure = await startEngineServer({ dir: home, config: { max_queue: 0 } }).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(EngineServerStartError);
    expect((failure as Error).message).toContain('max_queue');
  });
});
