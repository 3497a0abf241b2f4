/**
 * The engine's command-line contract, seen from TypeScript (DESIGN.md §1, engine/README.md): one JSON
 * object per line on stdout for progress, and an exit code that says what the activity should do.
 */

export type EngineCommand = 'train' | 'score';

/** One progress line. `event` is always present; the rest depends on it (step, loss, checkpoint...). */
export interface EngineEvent {
  event: string;
  [field: string]: unknown;
}

/** Parses a stdout line; anything that is not a JSON object with an `event` is not progress (undefined). */
export function parseEngineLine(line: string): EngineEvent | undefined {
  const text = line.trim();
  if (!text.startsWith('{')) return undefined;
  try {
    const value: unknown = JSON.parse(text);
    if (value && typeof value === 'object' && typeof (value as EngineEvent).event === 'string') {
      return value as EngineEvent;
    }
  } catch {
    // a partial or foreign line: ignore it, the exit code decides the outcome
  }
  return undefined;
}

export type EngineOutcome = 'done' | 'invalid-input' | 'numerical-failure' | 'retryable';

/** 0 done; 2 invalid config or data and 3 numerical failure are not worth retrying; anything else is. */
export function engineOutcome(exitCode: number | null): EngineOutcome {
  if (exitCode === 0) return 'done';
  if (exitCode === 2) return 'invalid-input';
  if (exitCode === 3) return 'numerical-failure';
  return 'retryable';
}

/** A one-line summary of the latest progress, for heartbeats and logs. */
export function describeProgress(event: EngineEvent | undefined): string {
  if (!event) return 'starting';
  if (event.event === 'step') {
    const loss = typeof event.loss === 'number' ? event.loss.toFixed(4) : '?';
    return `step ${event.step}/${event.total_steps} loss ${loss}`;
  }
  if (event.event === 'reference') return `reference log-probs ${event.done}/${event.total}`;
  return event.event;
}
