import type { PipelineConfig, TrainBudget } from './pipelineConfig';

/**
 * The engine job configs of the pipeline's stages (engine/README.md "Train config", "Score and serve
 * configs"), from the run config. Output paths are left to the job's directory on the gpu worker.
 */

export type EngineTrainMode = 'sft' | 'entropo-dpo' | 'entropo-kto' | 'verifier';

function trainConfig(
  mode: EngineTrainMode,
  model: string,
  dataPath: string,
  budget: TrainBudget,
  seed: number,
): Record<string, unknown> {
  return {
    mode,
    model,
    data: { path: dataPath, format: 'auto', max_length: budget.maxLength, truncation: 'cut_middle' },
    lora: {
      rank: budget.lora.rank,
      alpha: budget.lora.alpha,
      dropout: budget.lora.dropout,
      target_modules: 'all-linear',
    },
    optim: {
      lr: budget.lr,
      warmup_ratio: budget.warmupRatio,
      batch_size: budget.batchSize,
      epochs: budget.epochs,
      max_steps: budget.maxSteps ?? null,
    },
    seed,
    checkpoint_every: budget.checkpointEvery,
    gradient_checkpointing: budget.gradientCheckpointing,
    // Only when asked for: the job config is hashed into the stage's job id.
    ...(budget.compileLayers ? { compile_layers: true } : {}),
  };
}

/** SFT on the teacher's episodes (assistant tokens only). */
export function sftJob(config: PipelineConfig, dataPath: string): Record<string, unknown> {
  return trainConfig('sft', config.model.base, dataPath, config.sft.train, config.seed);
}

/**
 * EntroPO from the SFT adapter, which is also the reference policy (DESIGN.md §6); `lambda` overrides the
 * config's (a lambda = 0 baseline is plain DPO/KTO).
 */
export function entropoJob(
  config: PipelineConfig,
  dataPath: string,
  sftAdapter: string,
  lambda = config.entropo.lambda,
): Record<string, unknown> {
  const mode = config.entropo.mode === 'dpo' ? 'entropo-dpo' : 'entropo-kto';
  return {
    ...trainConfig(mode, config.model.base, dataPath, config.entropo.train, config.seed),
    init_adapter: sftAdapter,
    beta: config.entropo.beta,
    lambda,
  };
}

/** The verifier: the base model fine-tuned to answer YES/NO on pool trajectories labelled resolved or not. */
export function verifierJob(config: PipelineConfig, dataPath: string): Record<string, unknown> {
  return trainConfig('verifier', config.model.base, dataPath, config.verifier.train, config.seed);
}

/** Per-trajectory log-probs and entropy under a policy, or the verifier's P(YES). */
export function scoreJob(
  model: string,
  kind: 'trajectory' | 'verifier',
  dataPath: string,
  adapter: string | null,
  maxLength: number,
): Record<string, unknown> {
  return {
    model,
    kind,
    data: { path: dataPath, format: 'auto', max_length: maxLength, truncation: 'cut_middle' },
    ...(adapter ? { adapter } : {}),
  };
}
