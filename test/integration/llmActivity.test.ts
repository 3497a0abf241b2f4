import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { ArtifactStore } from '../../activities/artifacts';
import { callPolicy, type PolicyTurn, type PolicyTurnRequest } from '../../activities/llm';
import { llmEndpointSchema, samplingSchema } from '../../domain/llmPolicy';
import { isolatedHome } from '../helpers/env';
import { apiError, type ScriptedOpenAI, startScriptedOpenAI } from '../helpers/scriptedOpenAI';

isolatedHome('llm');
const store = new ArtifactStore();
let endpoint: ScriptedOpenAI | undefined;
afterEach(async () => {
  await endpoint?.close();
  endpoint = undefined;
});

const conversation = [
  { role: 'system', content: 'You are a coding agent.' },
  { role: 'user', content: 'Fix the failing test.' },
];

async function request(baseUrl: string, extra: Partial<PolicyTurnRequest> = {}): Promise<PolicyTurnRequest> {
  return {
    endpoint: llmEndpointSchema.parse({ baseUrl, model: 'policy-lora', maxRetries: 3, ...extra.endpoint }),
    sampling: samplingSchema.parse({ temperature: 0.7, topP: 0.8, topK: 20, minP: 0.05, maxTokens: 32 }),
    messagesId: (await store.putJson(conversation)).id,
    seed: 42,
    ...extra,
  };
}

function turn(req: PolicyTurnRequest, env: NodeJS.ProcessEnv = {}): Promise<PolicyTurn> {
  return new MockActivityEnvironment().run(callPolicy, { store, env }, req) as Promise<PolicyTurn>;
}

describe('callPolicy (openai client against a scripted OpenAI-compatible server)', () => {
  it('sends the conversation, sampling and key; stores the completion and returns only a small record', async () => {
    endpoint = await startScriptedOpenAI(() => ({ body: 'I will look at the file first.' }));
    const req = await request(endpoint.baseUrl, {});
    req.endpoint = { ...req.endpoint, apiKeyEnv: 'POLICY_KEY' };
    const result = await turn(req, { POLICY_KEY: 'sk-test-123' });

    expect(result).toMatchObject({
      kind: 'completion',
      finishReason: 'stop',
      promptTokens: 11,
      completionTokens: 7,
      attempts: 1,
    });
    if (result.kind !== 'completion') throw new Error('unreachable');
    expect(await store.getText(result.completionId)).toBe('I will look at the file first.');
    const [sent] = endpoint.requests;
    expect(sent!.path).toBe('/v1/chat/completions');
    expect(sent!.headers.authorization).toBe('Bearer sk-test-123');
    expect(sent!.body).toMatchObject({
      model: 'policy-lora',
      messages: conversation,
      top_k: 20,
      min_p: 0.05,
      seed: 42,
      max_tokens: 32,
    });
    expect(JSON.stringify(result)).not.toContain('look at the file'); // the text stays in the store
  });

  it('retries 429 and 5xx with backoff, then succeeds', async () => {
    endpoint = await startScriptedOpenAI((_r, i) =>
      i === 0
        ? {
            status: 429,
            body: apiError('slow down', null, 'rate_limit'),
            headers: { 'retry-after-ms': '20' },
          }
        : i === 1
          ? {
              status: 503,
              body: apiError('queue full', null, 'server_error'),
              headers: { 'retry-after-ms': '20' },
            }
          : { body: 'ok' },
    );
    const result = await turn(await request(endpoint.baseUrl));
    expect(result).toMatchObject({ kind: 'completion', attempts: 3 });
    expect(endpoint.requests).toHaveLength(3);
  });

  it('turns a context-length error into a token_limit signal, without retrying', async () => {
    endpoint = await startScriptedOpenAI(() => ({
      status: 400,
      body: apiError("This model's maximum context length is 8192 tokens.", 'context_length_exceeded'),
    }));
    const result = await turn(await request(endpoint.baseUrl));
    expect(result).toMatchObject({ kind: 'context_length' });
    expect(endpoint.requests).toHaveLength(1);
  });

  it('gives up on an endpoint that keeps failing with a retryable failure for Temporal to retry', async () => {
    endpoint = await startScriptedOpenAI(() => ({
      status: 502,
      body: apiError('bad gateway', null, 'server_error'),
      headers: { 'retry-after-ms': '10' },
    }));
    const failure = await turn(await request(endpoint.baseUrl)).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(ApplicationFailure);
    expect((failure as ApplicationFailure).type).toBe('LlmUnavailable');
    expect((failure as ApplicationFailure).nonRetryable).toBe(false);
    expect((failure as ApplicationFailure).message).toContain('after 4 attempt(s)');
    expect(endpoint.requests).toHaveLength(4);
  });

  it('treats a closed port as unavailable, not as a bad request', async () => {
    endpoint = await startScriptedOpenAI(() => ({ body: 'never' }));
    const deadUrl = endpoint.baseUrl;
    await endpoint.close();
    endpoint = undefined;
    const req = await request(deadUrl);
    req.endpoint = { ...req.endpoint, maxRetries: 0 };
    const failure = await turn(req).catch((e: unknown) => e);
    expect((failure as ApplicationFailure).type).toBe('LlmUnavailable');
  });

  it('fails for good on a rejected request or a missing key variable, naming the cause', async () => {
    endpoint = await startScriptedOpenAI(() => ({
      status: 404,
      body: apiError('model policy-lora does not exist', 'model_not_found'),
    }));
    const rejected = (await turn(await request(endpoint.baseUrl)).catch(
      (e: unknown) => e,
    )) as ApplicationFailure;
    expect(rejected.type).toBe('LlmRejected');
    expect(rejected.nonRetryable).toBe(true);
    expect(rejected.message).toContain('does not exist');
    expect(endpoint.requests).toHaveLength(1);

    const req = await request(endpoint.baseUrl);
    req.endpoint = { ...req.endpoint, apiKeyEnv: 'MISSING_POLICY_KEY' };
    const missing = (await turn(req, {}).catch((e: unknown) => e)) as ApplicationFailure;
    expect(missing.nonRetryable).toBe(true);
    expect(missing.message).toContain('MISSING_POLICY_KEY');
    expect(endpoint.requests).toHaveLength(1); // nothing was sent without the key
  });
});
