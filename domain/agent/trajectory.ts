import { z } from 'zod';
import { readJsonRows } from '../jsonRows';
import { type InputProblem, problemsFromZod } from '../schemaErrors';
import { EXIT_REASONS, episodeLimitsSchema } from './limits';

/**
 * The trajectory record: one JSON line per rollout. Big texts that every step produces (observations) and
 * the two opening messages are artifact ids, since they live in the artifact store; what the model wrote
 * (raw output, thought, parsed call) and the patch are inline, as the exporters need them.
 */

export const samplingParamsSchema = z.strictObject({
  temperature: z.number().min(0),
  topP: z.number().gt(0).max(1).optional(),
  topK: z.number().int().optional(),
  minP: z.number().min(0).max(1).optional(),
  maxTokens: z.number().int().min(1).optional(),
  stop: z.array(z.string()).optional(),
});
export type SamplingParams = z.infer<typeof samplingParamsSchema>;

export const policySchema = z.strictObject({
  /** What kind of policy: `engine`, `openai` (any compatible endpoint), `scripted`, `demonstrator`. */
  kind: z.string().min(1),
  /** The model or LoRA adapter name sent to the endpoint; the SWE-bench `model_name_or_path`. */
  model: z.string().min(1),
  baseUrl: z.string().optional(),
});
export type Policy = z.infer<typeof policySchema>;

export const trajectoryStepSchema = z.strictObject({
  /** 1-based. */
  index: z.number().int().min(1),
  /** The text before the call (the whole reply when no call was found). */
  thought: z.string(),
  /** The reply exactly as the model wrote it. */
  rawOutput: z.string(),
  call: z.strictObject({ name: z.string(), parameters: z.record(z.string(), z.string()) }).nullable(),
  /** Why the reply or call was not run (a `FormatError` or `ToolCallError` kind), when it was not. */
  error: z.string().optional(),
  /** The observation exactly as the model saw it next (notes and warnings included); null after `finish`. */
  observationId: z.string().nullable(),
  tokensIn: z.number().int().min(0),
  tokensOut: z.number().int().min(0),
  llmMs: z.number().min(0),
  toolMs: z.number().min(0),
});
export type TrajectoryStep = z.infer<typeof trajectoryStepSchema>;

export const trajectoryRecordSchema = z.strictObject({
  schemaVersion: z.literal(1),
  runId: z.string().min(1),
  rolloutId: z.string().min(1),
  /** The task's `instance_id`. */
  taskId: z.string().min(1),
  policy: policySchema,
  sampling: samplingParamsSchema,
  seed: z.number().int().nullable(),
  limits: episodeLimitsSchema,
  systemPromptId: z.string().min(1),
  taskMessageId: z.string().min(1),
  steps: z.array(trajectoryStepSchema),
  exitReason: z.enum(EXIT_REASONS),
  /** What ended the episode when it was an error (the LLM's or the sandbox's message). */
  exitDetail: z.string().optional(),
  /** The working tree's diff against the base commit; empty when nothing changed. */
  patch: z.string(),
  /** The grading report's artifact id; null when grading did not run. */
  gradingReportId: z.string().nullable(),
  resolved: z.boolean().nullable(),
  reward: z.number().nullable(),
  startedAt: z.string(),
  finishedAt: z.string(),
});
export type TrajectoryRecord = z.infer<typeof trajectoryRecordSchema>;

/** One line of the trajectory file. */
export function trajectoryLine(record: TrajectoryRecord): string {
  return JSON.stringify(record);
}

/** The records of a trajectory file (JSONL), every bad line and field named. */
export function parseTrajectoryFile(
  text: string,
  file: string,
): { records: TrajectoryRecord[]; problems: InputProblem[] } {
  const { rows, problems } = readJsonRows(text, file);
  const records: TrajectoryRecord[] = [];
  for (const row of rows) {
    const parsed = trajectoryRecordSchema.safeParse(row.value);
    if (parsed.success) records.push(parsed.data);
    else problems.push(...problemsFromZod(parsed.error, { file, line: row.line }));
  }
  return { records, problems };
}
