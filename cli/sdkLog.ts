import type { LogEntry } from '@temporalio/worker';
import { innermostCause } from '../domain/failures';

/**
 * One line of the Temporal SDK's log as the CLI prints it. The SDK's message alone ("Activity failed")
 * does not say which activity of which run failed or why; that is in the entry's metadata.
 * Undefined for the SDK's notices that mean nothing to a user.
 */
export function formatSdkLogEntry(entry: Pick<LogEntry, 'level' | 'message' | 'meta'>): string | undefined {
  if (/^No (workflows|Nexus)/.test(entry.message)) return undefined;
  const meta = entry.meta ?? {};
  const context = [
    typeof meta.activityType === 'string' ? `activity ${meta.activityType}` : undefined,
    typeof meta.workflowId === 'string' ? `workflow ${meta.workflowId}` : undefined,
    // Workflow entries carry the workflow type; activity entries say their activity, which is enough.
    typeof meta.workflowType === 'string' && typeof meta.activityType !== 'string'
      ? `type ${meta.workflowType}`
      : undefined,
    typeof meta.attempt === 'number' ? `attempt ${meta.attempt}` : undefined,
  ].filter(Boolean);
  const why = errorText(meta.error ?? meta.failure);
  return `[temporal ${entry.level}] ${entry.message}${context.length > 0 ? ` (${context.join(', ')})` : ''}${why ? `: ${why}` : ''}`;
}

/**
 * The innermost cause's message and type ("Activity task failed" says less than the error under it;
 * ApplicationFailure's type tells e.g. a bad input from a crash).
 */
function errorText(error: unknown): string | undefined {
  if (error === undefined || error === null) return undefined;
  if (typeof error !== 'object') return String(error);
  const root = innermostCause(error);
  const { message, type, name } = root as { message?: unknown; type?: unknown; name?: unknown };
  const kind = typeof type === 'string' && type ? type : typeof name === 'string' ? name : undefined;
  const text = typeof message === 'string' && message ? message : String(root);
  return kind && kind !== 'Error' && kind !== 'ApplicationFailure' ? `${text} [${kind}]` : text;
}
