import { z } from 'zod';
import { episodeLimitsSchema } from './agent/limits';
import { canonicalJson } from './canonicalJson';
import { llmEndpointSchema, samplingSchema } from './llmPolicy';
import { sandboxConfigSchema } from './runConfig';
import { describeProblems, problemsFromZod } from './schemaErrors';

/**
 * The pipeline's run config: the workflow input of `pipelineWorkflow`, the file `entropo run <config>` reads
 * and the `--input-file` of `temporal workflow start`. Every field has a default except the suites.
 * Defaults follow DESIGN.md §6–7 (the paper's recipe); the quickstart config shrinks budgets to fit a CPU.
 */

const runIdSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$/, 'letters, digits, ".", "_" and "-" (at most 101)');

const loraSchema = z.strictObject({
  rank: z.number().int().min(1).max(1024).default(8),
  alpha: z.number().positive().default(16),
  dropout: z.number().min(0).max(1).default(0),
});

/** One engine training job's budget (engine/README.md "Train config"), with the stage's own learning rate. */
const trainBudget = (lr: number) =>
  z.strictObject({
    lr: z.number().positive().max(1).default(lr),
    warmupRatio: z.number().min(0).max(1).default(0.1),
    batchSize: z.number().int().min(1).max(4096).default(4),
    epochs: z.number().int().min(1).max(100).default(1),
    /** Optimizer steps; unset = one pass of `epochs` over the data. */
    maxSteps: z.number().int().min(1).optional(),
    /** Tokens per conversation; longer ones lose middle turns (the system+task prefix and the end are kept). */
    maxLength: z.number().int().min(64).default(18_432),
    checkpointEvery: z.number().int().min(1).default(50),
    lora: loraSchema.prefault({}),
    gradientCheckpointing: z.boolean().default(false),
    /**
     * torch.compile each decoder layer: 1.40-1.63x a step on an H100 after a one-time compile (BENCHMARKS.md).
     * Off when absent. No default written into the parsed config: the config is part of each stage's key, and
     * runs recorded before this field existed must keep their keys (replay, stage reuse).
     */
    compileLayers: z.boolean().optional(),
  });
export type TrainBudget = z.infer<ReturnType<typeof trainBudget>>;

/** Where the policy being trained is served from. */
export const servingSchema = z.discriminatedUnion('kind', [
  /**
   * Our engine's OpenAI-compatible server, started by the gpu worker (the embedded default). `runtime`:
   * `torch` (exact fp32 log-probs) or `llamacpp` (llama.cpp, faster on a CPU: BENCHMARKS.md; engine/README.md).
   */
  z.strictObject({ kind: z.literal('engine'), runtime: z.enum(['torch', 'llamacpp']).default('torch') }),
  /** A command the gpu worker starts, e.g. `vllm serve <model> --enable-lora --port 8000`. */
  z.strictObject({
    kind: z.literal('command'),
    command: z.array(z.string().min(1)).min(1),
    baseUrl: z.url({ protocol: /^https?$/ }),
    healthPath: z.string().startsWith('/').default('/health'),
    startupTimeoutSec: z.number().int().min(1).default(600),
  }),
  /** A server someone else runs; adapters are loaded into it through `/v1/load_lora_adapter`. */
  z.strictObject({ kind: z.literal('external'), baseUrl: z.url({ protocol: /^https?$/ }) }),
]);
export type ServingConfig = z.infer<typeof servingSchema>;

const rolloutBudgetSchema = z.strictObject({
  /** Episodes per task. */
  n: z.number().int().min(1).max(1024).default(16),
  concurrency: z.number().int().min(1).max(1000).default(8),
  sampling: samplingSchema.prefault({}),
  limits: episodeLimitsSchema.prefault({}),
});

export const pipelineConfigSchema = z.strictObject({
  /** Same run id = same run: `entropo run` resumes it, finished stages are not run again. */
  runId: runIdSchema.optional(),
  /** The base model (engine name, `.gguf` path or model directory) and the name it is served under. */
  model: z
    .strictObject({
      base: z.string().min(1).default('smollm2-135m'),
      servedName: z.string().min(1).optional(),
    })
    .prefault({}),
  /** SWE-bench JSON/JSONL instance files: training split (teacher, pool) and held-out split (TTS). */
  suites: z.strictObject({ train: z.string().min(1), test: z.string().min(1) }),
  seed: z.number().int().min(0).default(0),
  serving: servingSchema.prefault({ kind: 'engine' }),
  teacher: z
    .discriminatedUnion('kind', [
      z.strictObject({ kind: z.literal('demonstrator') }),
      z.strictObject({ kind: z.literal('openai'), endpoint: llmEndpointSchema, name: z.string().optional() }),
    ])
    .prefault({ kind: 'demonstrator' }),
  sft: z
    .strictObject({
      /** Start from an existing SFT adapter (a peft directory) instead of training one. */
      adapter: z.string().min(1).optional(),
      /** Teacher episodes per training task. */
      teacherRollouts: z.number().int().min(1).default(1),
      /** Which teacher episodes are SFT data: resolved ones (default) or every submitted one. */
      keep: z.enum(['resolved', 'submitted']).default('resolved'),
      /**
       * The teacher's step limit. Its other limits are the pool's, so teacher and student episodes open with
       * the same system prompt and task message, the prefix a preference pair shares.
       */
      teacherMaxSteps: z.number().int().min(1).default(50),
      train: trainBudget(1e-4).prefault({}),
    })
    .prefault({}),
  pool: rolloutBudgetSchema
    .extend({
      /** Start from existing trajectory files (`trajectories.jsonl` of earlier pools) instead of rolling out. */
      trajectories: z.array(z.string().min(1)).min(1).optional(),
      /** The teacher's SFT episodes join the pool, as the paper's pool has student and teacher episodes. */
      includeTeacher: z.boolean().default(true),
    })
    .prefault({}),
  pairing: z
    .strictObject({
      maxPairsPerTask: z.number().int().min(1).default(4),
      /** Start from an existing pair file (engine pair JSONL) instead of pairing the pool. */
      pairs: z.string().min(1).optional(),
    })
    .prefault({}),
  entropo: z
    .strictObject({
      mode: z.enum(['dpo', 'kto']).default('dpo'),
      beta: z.number().positive().default(0.1),
      /** The entropy bonus; alpha = lambda + beta (0 = plain DPO/KTO). */
      lambda: z.number().min(0).default(0.01),
      train: trainBudget(1e-5).prefault({}),
    })
    .prefault({}),
  verifier: z
    .strictObject({
      enabled: z.boolean().default(true),
      train: trainBudget(1e-4).prefault({}),
    })
    .prefault({}),
  tts: rolloutBudgetSchema.prefault({}),
  selector: z
    .strictObject({
      /** Verifier probability a candidate needs (DESIGN.md §7: 0.01). */
      eta: z.number().min(0).max(1).default(0.01),
      /** Most steps for Verified-like suites, fewest for Lite-like ones. */
      prefer: z.enum(['most-steps', 'fewest-steps']).default('most-steps'),
      regressionCheck: z.boolean().default(true),
    })
    .prefault({}),
  /**
   * Policies evaluated beside the trained one, on the same tasks: `sft` (the SFT adapter), `base` (no
   * adapter) and `lambda0` (EntroPO with lambda = 0, i.e. plain DPO/KTO from the same SFT model and pairs).
   */
  baselines: z.array(z.enum(['base', 'sft', 'lambda0'])).default([]),
  sandbox: sandboxConfigSchema.prefault({}),
  grading: z.strictObject({ testTimeoutSec: z.number().int().min(1).default(900) }).prefault({}),
});
export type PipelineConfig = z.infer<typeof pipelineConfigSchema>;
export type PipelineConfigInput = z.input<typeof pipelineConfigSchema>;

export class InvalidPipelineConfigError extends Error {
  override name = 'InvalidPipelineConfigError';
}

/** The config with defaults filled in; every bad field is named at once. */
export function parsePipelineConfig(input: unknown): PipelineConfig {
  const result = pipelineConfigSchema.safeParse(input);
  if (result.success) return result.data;
  throw new InvalidPipelineConfigError(describeProblems('run config', problemsFromZod(result.error)));
}

export const PIPELINE_STAGES = ['sft', 'pool', 'pairing', 'training', 'tts', 'report'] as const;
export type PipelineStage = (typeof PIPELINE_STAGES)[number];

/**
 * 16 hex digits identifying a value's canonical JSON (two independent 32-bit FNV-1a hashes). Workflow code
 * calls it, where node:crypto is not available; it names stages, it does not protect anything.
 */
export function configHash(value: unknown): string {
  const text = canonicalJson(value);
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ 0x5bd1e995;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995) ^ (b >>> 15);
  }
  return (a >>> 0).toString(16).padStart(8, '0') + (b >>> 0).toString(16).padStart(8, '0');
}

/** What the stage's work depends on: its part of the config and its inputs (artifact ids). */
export function stageKey(runId: string, stage: PipelineStage, config: unknown, inputs: unknown): string {
  return `${runId}/${stage}/${configHash({ config, inputs })}`;
}

export { canonicalJson };
