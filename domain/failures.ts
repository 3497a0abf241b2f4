/**
 * Failures come wrapped (workflow → child workflow → activity → application failure); the innermost cause
 * says what went wrong. Plain object walking, no Temporal imports, so workflow code and the CLI share it.
 */

export interface FailureCause {
  message?: string;
  /** An ApplicationFailure's type (e.g. `InvalidRunConfig`), when it has one. */
  type?: string | null;
  name?: string;
  cause?: unknown;
}

/** The innermost cause of a failure chain (the failure itself when it has none). */
export function innermostCause(err: unknown): FailureCause {
  let current = err as FailureCause;
  while (typeof current?.cause === 'object' && current.cause !== null)
    current = current.cause as FailureCause;
  return current ?? {};
}

/** The innermost cause's message. */
export function rootMessage(err: unknown): string {
  return innermostCause(err).message || String(err);
}
