import { z } from 'zod';

/**
 * A policy served by any OpenAI-compatible endpoint (our engine's server, vLLM, SGLang, a hosted API):
 * where it is, which model or LoRA adapter answers, and how it samples. The API key is never here: the
 * config names an environment variable of the worker that makes the calls, so no secret enters a
 * workflow input or history.
 */

export const llmEndpointSchema = z.strictObject({
  /** Base URL of the OpenAI-compatible API, e.g. `http://127.0.0.1:8000/v1`. */
  baseUrl: z.url({ protocol: /^https?$/, error: 'an http(s) URL such as http://127.0.0.1:8000/v1' }),
  /** Model name, or the name a LoRA adapter was loaded under (vLLM, our engine). */
  model: z.string().min(1),
  /** Environment variable of the LLM worker holding the API key; unset → no key is sent. */
  apiKeyEnv: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name')
    .optional(),
  /** One request's limit; a CPU-served model may take minutes per turn. */
  requestTimeoutSec: z.number().positive().default(600),
  /** Retries of one request on 408/409/429/5xx and connection errors, with exponential backoff. */
  maxRetries: z.number().int().min(0).max(20).default(4),
  /**
   * Attempts of one policy call (each makes 1 + `maxRetries` requests; a lost LLM worker also costs one)
   * before the episode ends with `llm_error`: with the requests' backoff, how long an outage is ridden out.
   * Absent: {@link DEFAULT_CALL_RETRY} (optional, so that inputs written before it existed stay valid).
   */
  callAttempts: z.number().int().min(1).max(100).optional(),
  /** Wait before the second attempt of a call; it doubles for each attempt after that. */
  callRetryIntervalSec: z.number().positive().max(3600).optional(),
});
export const DEFAULT_CALL_RETRY = { callAttempts: 3, callRetryIntervalSec: 5 } as const;
export type LlmEndpoint = z.infer<typeof llmEndpointSchema>;
export type LlmEndpointInput = z.input<typeof llmEndpointSchema>;

/** Sampling parameters (the paper's TTS setting is temperature 0.7, top_p 0.8, top_k 20). */
export const samplingSchema = z.strictObject({
  temperature: z.number().min(0).max(5).default(0.7),
  topP: z.number().gt(0).max(1).default(0.8),
  /** Sent as vLLM's extra body field `top_k`; 0 or -1 means off. */
  topK: z.number().int().min(-1).default(20),
  /** Sent as vLLM's extra body field `min_p`; 0 means off. */
  minP: z.number().min(0).max(1).default(0),
  maxTokens: z.number().int().positive().default(1024),
  stop: z.array(z.string().min(1)).max(8).optional(),
});
export type Sampling = z.infer<typeof samplingSchema>;
export type SamplingInput = z.input<typeof samplingSchema>;

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool';
  content: string;
}

/**
 * The body of one chat completion request. `top_k` and `min_p` are not OpenAI fields; vLLM, SGLang and our
 * engine read them from the body, and OpenAI's own API ignores them.
 */
export function chatCompletionBody(
  model: string,
  messages: readonly ChatMessage[],
  sampling: Sampling,
  seed: number | undefined,
): Record<string, unknown> {
  const body: Record<string, unknown> = {
    model,
    messages,
    temperature: sampling.temperature,
    top_p: sampling.topP,
    max_tokens: sampling.maxTokens,
    top_k: sampling.topK,
    min_p: sampling.minP,
  };
  if (seed !== undefined) body.seed = seed;
  if (sampling.stop) body.stop = sampling.stop;
  return body;
}

/**
 * What a failed request means for the episode:
 * - `context_length`: the conversation no longer fits the model (the episode ends with `token_limit`);
 * - `retryable`: the endpoint is overloaded, restarting or unreachable (408, 409, 429, 5xx, no response);
 * - `fatal`: the request itself is wrong (bad model name, bad key): retrying cannot help.
 */
export type LlmFailureKind = 'context_length' | 'retryable' | 'fatal';

const CONTEXT_LENGTH_MESSAGE =
  /context[ _-]?length|maximum context|context window|too many tokens|prompt is too long|exceeds the model/i;

export function classifyLlmFailure(failure: {
  status?: number | undefined;
  code?: string | null | undefined;
  message?: string | undefined;
}): LlmFailureKind {
  const { status, code, message = '' } = failure;
  if (code === 'context_length_exceeded') return 'context_length';
  if ((status === 400 || status === 413) && CONTEXT_LENGTH_MESSAGE.test(message)) return 'context_length';
  if (status === undefined || status === 408 || status === 409 || status === 429 || status >= 500)
    return 'retryable';
  return 'fatal';
}
