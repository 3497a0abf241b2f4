import { ApplicationFailure, Context } from '@temporalio/activity';
import OpenAI from 'openai';
import {
  type ChatMessage,
  chatCompletionBody,
  classifyLlmFailure,
  type LlmEndpoint,
  type Sampling,
} from '../domain/llmPolicy';
import type { ArtifactStore } from './artifacts';
import { withHeartbeat } from './heartbeat';

/**
 * One policy turn against an OpenAI-compatible endpoint, through the `openai` package. The conversation
 * is read from the artifact store by id and the completion is stored there: the workflow only ever sees
 * the small {@link PolicyTurn} record.
 */

export interface PolicyTurnRequest {
  endpoint: LlmEndpoint;
  sampling: Sampling;
  /** Artifact id of the conversation so far: a JSON array of {@link ChatMessage}. */
  messagesId: string;
  /** Per-request seed, so one rollout's sampling is reproducible whatever else the server is doing. */
  seed?: number;
}

export type PolicyTurn =
  | {
      kind: 'completion';
      /** Artifact id of the raw completion text. */
      completionId: string;
      finishReason: string;
      promptTokens: number;
      completionTokens: number;
      latencyMs: number;
      /** Request attempts the client made (1 + its retries). */
      attempts: number;
    }
  /** The conversation no longer fits the model: the episode ends with `token_limit`. */
  | { kind: 'context_length'; message: string; latencyMs: number };

export async function callPolicy(
  deps: { store: ArtifactStore; env?: NodeJS.ProcessEnv },
  request: PolicyTurnRequest,
): Promise<PolicyTurn> {
  const { endpoint, sampling } = request;
  const env = deps.env ?? process.env;
  let apiKey = 'none'; // the client insists on a key; servers without auth ignore it
  if (endpoint.apiKeyEnv) {
    const value = env[endpoint.apiKeyEnv];
    if (!value) {
      throw ApplicationFailure.nonRetryable(
        `the policy's API key variable ${endpoint.apiKeyEnv} is not set in the LLM worker's environment`,
        'LlmConfig',
      );
    }
    apiKey = value;
  }
  const messages = await deps.store.getJson<ChatMessage[]>(request.messagesId);
  let attempts = 0;
  const client = new OpenAI({
    baseURL: endpoint.baseUrl,
    apiKey,
    timeout: endpoint.requestTimeoutSec * 1000,
    maxRetries: endpoint.maxRetries,
    // Counts attempts (the first and each retry) without changing what the client sends.
    fetch: (url, init) => {
      attempts++;
      return fetch(url, init);
    },
  });
  const body = chatCompletionBody(endpoint.model, messages, sampling, request.seed);
  const started = performance.now();
  return withHeartbeat({ model: endpoint.model }, async () => {
    let completion: OpenAI.Chat.Completions.ChatCompletion;
    try {
      completion = await client.chat.completions.create(
        body as unknown as OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming,
        { signal: Context.current().cancellationSignal },
      );
    } catch (e) {
      const latencyMs = Math.round(performance.now() - started);
      if (!(e instanceof OpenAI.APIError)) throw e;
      const kind = classifyLlmFailure({ status: e.status, code: e.code, message: e.message });
      if (kind === 'context_length') return { kind, message: e.message, latencyMs };
      const what = `${endpoint.baseUrl} (model ${endpoint.model}) after ${attempts} attempt(s): ${e.message}`;
      // Retryable failures go back to Temporal, whose retry policy decides when the rollout gives up (llm_error).
      if (kind === 'retryable')
        throw ApplicationFailure.retryable(`LLM endpoint unavailable: ${what}`, 'LlmUnavailable');
      throw ApplicationFailure.nonRetryable(`LLM request rejected: ${what}`, 'LlmRejected');
    }
    const choice = completion.choices[0];
    const text = choice?.message?.content ?? '';
    const { id: completionId } = await deps.store.put(text);
    return {
      kind: 'completion',
      completionId,
      finishReason: choice?.finish_reason ?? 'unknown',
      promptTokens: completion.usage?.prompt_tokens ?? 0,
      completionTokens: completion.usage?.completion_tokens ?? 0,
      latencyMs: Math.round(performance.now() - started),
      attempts,
    };
  });
}
