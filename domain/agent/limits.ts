import { z } from 'zod';

/**
 * The limits of an episode and the decision after each step: go on (with a "steps remaining" warning near
 * the end and the time the next command may take) or stop with an exit reason. Every episode ends with
 * exactly one of `EXIT_REASONS`.
 */

export const EXIT_REASONS = [
  'submitted',
  'step_limit',
  'token_limit',
  'time_limit',
  'llm_error',
  'sandbox_error',
] as const;
export type ExitReason = (typeof EXIT_REASONS)[number];

export const episodeLimitsSchema = z
  .object({
    /** Hard limit: model calls per episode (the paper allows 200). */
    maxSteps: z.number().int().min(1).default(200),
    /** Soft limit: observations carry a "steps remaining" warning once this many steps or fewer remain. */
    warnStepsRemaining: z.number().int().min(0).default(10),
    /** Prompt plus completion tokens of one model call; reaching it ends the episode with `token_limit`. */
    maxContextTokens: z.number().int().min(1).default(32_768),
    /** Completion tokens over the whole episode (the paper allows 131,072). */
    maxGeneratedTokens: z.number().int().min(1).default(131_072),
    /** One `execute_bash` or `search` command; a command that runs longer is killed and the episode goes on. */
    commandTimeoutSec: z.number().int().min(1).default(120),
    /** The whole episode, model calls and commands together. */
    maxWallSec: z.number().int().min(1).default(3600),
  })
  .strict();
export type EpisodeLimits = z.infer<typeof episodeLimitsSchema>;

/** Where the episode stands after a step. */
export interface EpisodeProgress {
  /** Model calls made so far, this one included. */
  steps: number;
  /** Prompt plus completion tokens of the last model call. */
  lastContextTokens: number;
  /** Completion tokens of every call so far. */
  generatedTokens: number;
  elapsedMs: number;
}

/**
 * What the step ended with. `observed`: a tool ran or the reply got a format-error observation, and the
 * model may go on. `context_length_exceeded`: the server refused the prompt as too long.
 */
export type StepOutcome =
  | 'observed'
  | 'submitted'
  | 'llm_error'
  | 'context_length_exceeded'
  | 'sandbox_error';

export type NextStep =
  | {
      kind: 'continue';
      warning: string | null;
      /** The next command's timeout: the per-command limit, or less when the episode's time runs out first. */
      commandTimeoutSec: number;
      /** Time left for the next model call. */
      llmTimeoutMs: number;
      /** The most the next call may generate (cap the request's max_tokens with it). */
      generatedTokensLeft: number;
    }
  | { kind: 'exit'; reason: ExitReason };

/**
 * The decision after a step. A submission counts even on the last step; errors come next; then the limits,
 * tokens before time before steps (so a step that hits several reports the one the model could least help).
 */
export function nextStep(limits: EpisodeLimits, progress: EpisodeProgress, outcome: StepOutcome): NextStep {
  const exit = (reason: ExitReason): NextStep => ({ kind: 'exit', reason });
  if (outcome === 'submitted') return exit('submitted');
  if (outcome === 'llm_error') return exit('llm_error');
  if (outcome === 'sandbox_error') return exit('sandbox_error');
  if (outcome === 'context_length_exceeded') return exit('token_limit');
  if (
    progress.lastContextTokens >= limits.maxContextTokens ||
    progress.generatedTokens >= limits.maxGeneratedTokens
  ) {
    return exit('token_limit');
  }
  const wallLeftMs = limits.maxWallSec * 1000 - progress.elapsedMs;
  if (wallLeftMs <= 0) return exit('time_limit');
  if (progress.steps >= limits.maxSteps) return exit('step_limit');
  return {
    kind: 'continue',
    warning: stepsRemainingWarning(limits, progress.steps),
    commandTimeoutSec: Math.max(1, Math.min(limits.commandTimeoutSec, Math.floor(wallLeftMs / 1000))),
    llmTimeoutMs: wallLeftMs,
    generatedTokensLeft: limits.maxGeneratedTokens - progress.generatedTokens,
  };
}

/** The warning appended to an observation when few steps remain, or null. */
export function stepsRemainingWarning(limits: EpisodeLimits, steps: number): string | null {
  const remaining = limits.maxSteps - steps;
  if (remaining <= 0 || remaining > limits.warnStepsRemaining) return null;
  if (remaining === 1) {
    return 'Steps remaining: 1. This is your last step: if your fix is in place, call finish now.';
  }
  return `Steps remaining: ${remaining}. Make sure your fix is in place and call finish before you run out of steps.`;
}
