import type { TrajectoryRecord } from './trajectory';

/**
 * Exports of trajectory records: SWE-bench predictions, LLaMA-Factory ShareGPT multi-turn rows and the
 * engine's own trajectory rows (both read by `engine/entropo_engine/data.py`). Texts kept in the artifact
 * store (system prompt, task message, observations) come through `text`, which the caller backs with the
 * store.
 */

export type TextById = (id: string) => string;

export interface SwebenchPrediction {
  instance_id: string;
  model_name_or_path: string;
  model_patch: string;
}

/** The prediction row of the SWE-bench harness; `modelName` overrides the policy's model name. */
export function toSwebenchPrediction(record: TrajectoryRecord, modelName?: string): SwebenchPrediction {
  return {
    instance_id: record.taskId,
    model_name_or_path: modelName ?? record.policy.model,
    model_patch: record.patch,
  };
}

export interface ShareGptTurn {
  from: 'human' | 'gpt' | 'observation';
  value: string;
}

export interface ShareGptRow {
  id: string;
  system: string;
  conversations: ShareGptTurn[];
  /** The KTO label (LLaMA-Factory's `kto_tag`): resolved or not. */
  kto_tag?: boolean;
}

/**
 * A LLaMA-Factory ShareGPT multi-turn row: the task as `human`, each reply as `gpt`, each observation as
 * `observation`, the system prompt in `system`. Replies are `gpt` turns holding the raw text, not
 * `function_call` turns: LLaMA-Factory re-renders a `function_call` value as a JSON tool call in the
 * template's own tool format, which is not the `<function=…>` text the scaffold parses. Its dataset_info
 * entry: `"formatting": "sharegpt", "columns": {"messages": "conversations", "system": "system"},
 * "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
 * "observation_tag": "observation"}` (plus `"kto_tag": "kto_tag"` for KTO).
 *
 * The conversation ends on the model's last reply (an observation after it teaches nothing), so turns
 * alternate human/observation and gpt as LLaMA-Factory requires. Null when the model never replied.
 */
export function toShareGpt(
  record: TrajectoryRecord,
  text: TextById,
  options: { ktoTag?: boolean } = {},
): ShareGptRow | null {
  if (record.steps.length === 0) return null;
  const conversations: ShareGptTurn[] = [{ from: 'human', value: text(record.taskMessageId) }];
  record.steps.forEach((step, i) => {
    conversations.push({ from: 'gpt', value: step.rawOutput });
    if (step.observationId !== null && i < record.steps.length - 1) {
      conversations.push({ from: 'observation', value: text(step.observationId) });
    }
  });
  const row: ShareGptRow = { id: record.rolloutId, system: text(record.systemPromptId), conversations };
  if (options.ktoTag) {
    if (record.resolved === null)
      throw new Error(`rollout ${record.rolloutId} was not graded, so it has no KTO label`);
    row.kto_tag = record.resolved;
  }
  return row;
}

export interface EngineMessage {
  role: 'system' | 'user' | 'assistant' | 'tool';
  content: string;
}

/** The engine's trajectory row (`{id, messages, resolved}`), the same conversation as `toShareGpt`. */
export function toEngineTrajectory(
  record: TrajectoryRecord,
  text: TextById,
): { id: string; messages: EngineMessage[]; resolved?: boolean } | null {
  const row = toShareGpt(record, text);
  if (row === null) return null;
  const role = { human: 'user', gpt: 'assistant', observation: 'tool' } as const;
  const messages: EngineMessage[] = [
    { role: 'system', content: row.system },
    ...row.conversations.map((t) => ({ role: role[t.from], content: t.value })),
  ];
  return { id: row.id, messages, ...(record.resolved !== null ? { resolved: record.resolved } : {}) };
}

/** Rows as JSONL: one JSON object a line, a newline after the last. */
export function jsonLines(rows: readonly unknown[]): string {
  return rows.map((row) => `${JSON.stringify(row)}\n`).join('');
}
