import { describe, expect, it } from 'vitest';
import {
  chatCompletionBody,
  classifyLlmFailure,
  llmEndpointSchema,
  samplingSchema,
} from '../../domain/llmPolicy';

describe('chatCompletionBody', () => {
  it('sends top_k and min_p as extra body fields, with the seed and stop when given', () => {
    const sampling = samplingSchema.parse({
      temperature: 0.7,
      topP: 0.8,
      topK: 20,
      minP: 0.05,
      maxTokens: 64,
      stop: ['</function>'],
    });
    const body = chatCompletionBody('sft-adapter', [{ role: 'user', content: 'hi' }], sampling, 7);
    expect(body).toEqual({
      model: 'sft-adapter',
      messages: [{ role: 'user', content: 'hi' }],
      temperature: 0.7,
      top_p: 0.8,
      max_tokens: 64,
      top_k: 20,
      min_p: 0.05,
      seed: 7,
      stop: ['</function>'],
    });
  });

  it('leaves seed and stop out when unset', () => {
    const body = chatCompletionBody('m', [], samplingSchema.parse({}), undefined);
    expect(body).not.toHaveProperty('seed');
    expect(body).not.toHaveProperty('stop');
  });
});

describe('classifyLlmFailure', () => {
  it.each([
    [{ status: 400, code: 'context_length_exceeded', message: 'x' }, 'context_length'],
    [
      {
        status: 400,
        message: "This model's maximum context length is 8192 tokens. However, you requested 9000",
      },
      'context_length',
    ],
    [{ status: 400, message: 'prompt is too long: 200000 tokens' }, 'context_length'],
    [{ status: 429, message: 'rate limited' }, 'retryable'],
    [{ status: 503, message: 'queue full' }, 'retryable'],
    [{ status: 500, message: 'boom' }, 'retryable'],
    [{ status: 408, message: 'timeout' }, 'retryable'],
    [{ status: undefined, message: 'Connection error.' }, 'retryable'],
    [{ status: 401, message: 'bad key' }, 'fatal'],
    [{ status: 404, message: 'model not found' }, 'fatal'],
    [{ status: 400, message: 'temperature must be >= 0' }, 'fatal'],
  ] as const)('%j → %s', (failure, kind) => {
    expect(classifyLlmFailure(failure)).toBe(kind);
  });
});

describe('llmEndpointSchema', () => {
  it('names bad fields and applies defaults', () => {
    const bad = llmEndpointSchema.safeParse({
      baseUrl: 'ftp://x',
      model: '',
      apiKeyEnv: 'not a var',
      extra: 1,
    });
    expect(bad.success).toBe(false);
    const paths = bad.error!.issues.map((i) => i.path.join('.') || i.message).sort();
    expect(paths).toEqual(expect.arrayContaining(['apiKeyEnv', 'baseUrl', 'model']));
    const ok = llmEndpointSchema.parse({ baseUrl: 'http://127.0.0.1:8000/v1', model: 'smollm2-135m' });
    expect(ok).toMatchObject({ requestTimeoutSec: 600, maxRetries: 4 });
  });

  it('bounds the call attempts and their interval', () => {
    const bad = llmEndpointSchema.safeParse({
      baseUrl: 'http://127.0.0.1:8000/v1',
      model: 'm',
      callAttempts: 0,
      callRetryIntervalSec: 0,
    });
    expect(bad.error!.issues.map((i) => i.path.join('.')).sort()).toEqual([
      'callAttempts',
      'callRetryIntervalSec',
    ]);
  });
});
