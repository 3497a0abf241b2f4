import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A scripted OpenAI-compatible HTTP server: a stand-in for a model endpoint (outside our system) that
 * answers chat completion requests from recorded responses, so tests go through the same `openai`
 * client code path as production. Every request is recorded for the test to inspect.
 */

export interface RecordedRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: Record<string, unknown>;
}

export interface ScriptedReply {
  status?: number;
  /** JSON body; a string is sent as the assistant message of a normal completion. */
  body: unknown;
  headers?: Record<string, string>;
}

export interface ScriptedOpenAI {
  /** Base URL including `/v1`. */
  baseUrl: string;
  requests: RecordedRequest[];
  close(): Promise<void>;
}

/** A completion body in the OpenAI shape, with usage counted in whitespace-separated words. */
export function completion(content: string, finishReason = 'stop'): Record<string, unknown> {
  return {
    id: `chatcmpl-${Math.random().toString(36).slice(2)}`,
    object: 'chat.completion',
    created: 0,
    model: 'scripted',
    choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: finishReason }],
    usage: {
      prompt_tokens: 11,
      completion_tokens: content.split(/\s+/).filter(Boolean).length,
      total_tokens: 0,
    },
  };
}

/** An error body in the OpenAI shape. */
export function apiError(message: string, code: string | null = null, type = 'invalid_request_error') {
  return { error: { message, type, param: null, code } };
}

export async function startScriptedOpenAI(
  script: (request: RecordedRequest, index: number) => ScriptedReply | Promise<ScriptedReply>,
): Promise<ScriptedOpenAI> {
  const requests: RecordedRequest[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const recorded: RecordedRequest = {
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        body: raw ? (JSON.parse(raw) as Record<string, unknown>) : {},
      };
      requests.push(recorded);
      void Promise.resolve(script(recorded, requests.length - 1)).then((reply) => {
        const body = typeof reply.body === 'string' ? completion(reply.body) : reply.body;
        res.writeHead(reply.status ?? 200, { 'content-type': 'application/json', ...reply.headers });
        res.end(JSON.stringify(body));
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
