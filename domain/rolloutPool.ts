import { z } from 'zod';
import { type ExitReason, episodeLimitsSchema } from './agent/limits';
import { llmEndpointSchema, samplingSchema } from './llmPolicy';
import { sandboxConfigSchema } from './runConfig';
import { describeProblems, problemsFromZod } from './schemaErrors';

/**
 * The rollout pool's config (the workflow input, also from `temporal workflow start --input-file`): every
 * task of a suite × N episodes of one policy, each with its own seed, at most `concurrency` at once.
 */

export const rolloutPolicySchema = z.discriminatedUnion('kind', [
  z.strictObject({
    /** Any OpenAI-compatible endpoint: the engine's server, vLLM, SGLang, a hosted API. */
    kind: z.literal('openai'),
    endpoint: llmEndpointSchema,
    /** The policy's name in trajectories and predictions; default: the endpoint's model. */
    name: z.string().min(1).optional(),
  }),
  z.strictObject({
    /** The gold-patch demonstrator: a teacher for training splits only. */
    kind: z.literal('demonstrator'),
    name: z.string().min(1).default('gold-patch-demonstrator'),
  }),
]);
export type RolloutPolicyConfig = z.infer<typeof rolloutPolicySchema>;

export const rolloutPoolConfigSchema = z.strictObject({
  /** SWE-bench JSON/JSONL instance file (a suite's instances.jsonl). */
  instances: z.string().min(1),
  runId: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$/, 'letters, digits, ".", "_" and "-"')
    .optional(),
  policy: rolloutPolicySchema,
  /** Episodes per task. */
  n: z.number().int().min(1).max(1024).default(4),
  /** Episodes at once (a bounded sliding window of child workflows). */
  concurrency: z.number().int().min(1).max(1000).default(8),
  /** Episode k of task t gets seed `seed + t·n + k` (and `+ step` per model call). */
  seed: z.number().int().min(0).default(0),
  sampling: samplingSchema.prefault({}),
  limits: episodeLimitsSchema.prefault({}),
  sandbox: sandboxConfigSchema.prefault({}),
  grading: z.strictObject({ testTimeoutSec: z.number().int().min(1).default(900) }).prefault({}),
  /** Child workflows one run of the pool starts before it continues-as-new (Temporal's history limits). */
  rolloutsPerRun: z.number().int().min(1).max(2000).default(500),
});
export type RolloutPoolConfig = z.infer<typeof rolloutPoolConfigSchema>;
export type RolloutPoolConfigInput = z.input<typeof rolloutPoolConfigSchema>;

export class InvalidRolloutConfigError extends Error {
  override name = 'InvalidRolloutConfigError';
}

export function parseRolloutPoolConfig(input: unknown): RolloutPoolConfig {
  const result = rolloutPoolConfigSchema.safeParse(input);
  if (result.success) return result.data;
  throw new InvalidRolloutConfigError(describeProblems('rollout config', problemsFromZod(result.error)));
}

/** The name the policy's episodes carry. */
export function policyName(policy: RolloutPolicyConfig): string {
  return policy.kind === 'openai' ? (policy.name ?? policy.endpoint.model) : policy.name;
}

/** One finished episode as the pool keeps it (the trajectory itself is in the artifact store). */
export interface RolloutOutcome {
  instanceId: string;
  index: number;
  seed: number;
  exitReason: ExitReason | 'failed';
  resolved: boolean | null;
  steps: number;
  generatedTokens: number;
  trajectoryId: string | null;
  /** Why the episode's workflow failed (not an exit reason: an error of ours). */
  error?: string;
}

export interface RolloutPoolProgress {
  runId: string;
  stage: 'loading' | 'rolling out' | 'writing' | 'done';
  total: number;
  queued: number;
  running: number;
  done: number;
  failed: number;
  resolved: number;
  generatedTokens: number;
}

/** The seed of episode `index` of task number `task`. */
export function rolloutSeed(base: number, task: number, n: number, index: number): number {
  return base + task * n + index;
}

export interface PoolSummary {
  rollouts: number;
  resolved: number;
  failed: number;
  exitReasons: Partial<Record<ExitReason | 'failed', number>>;
  generatedTokens: number;
  perTask: { instanceId: string; rollouts: number; resolved: number }[];
}

export function summarizePool(outcomes: readonly RolloutOutcome[]): PoolSummary {
  const exitReasons: PoolSummary['exitReasons'] = {};
  const perTask = new Map<string, { instanceId: string; rollouts: number; resolved: number }>();
  for (const o of outcomes) {
    exitReasons[o.exitReason] = (exitReasons[o.exitReason] ?? 0) + 1;
    const task = perTask.get(o.instanceId) ?? { instanceId: o.instanceId, rollouts: 0, resolved: 0 };
    task.rollouts++;
    if (o.resolved) task.resolved++;
    perTask.set(o.instanceId, task);
  }
  return {
    rollouts: outcomes.length,
    resolved: outcomes.filter((o) => o.resolved).length,
    failed: outcomes.filter((o) => o.exitReason === 'failed').length,
    exitReasons,
    generatedTokens: outcomes.reduce((sum, o) => sum + o.generatedTokens, 0),
    perTask: [...perTask.values()],
  };
}

/** One line for a terminal: `rolling out [####----] 8/16 · 2 running · 5 resolved · 1 failed · 12,345 tokens`. */
export function formatPoolProgress(p: RolloutPoolProgress, width = 20): string {
  const filled = p.total === 0 ? 0 : Math.round((p.done / p.total) * width);
  return `${p.stage.padEnd(11)} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${p.done}/${p.total} · ${p.running} running · ${p.resolved} resolved · ${p.failed} failed · ${p.generatedTokens.toLocaleString('en-US')} tokens`;
}
