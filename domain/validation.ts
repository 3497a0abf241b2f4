import type { GradeSummary } from './grading';
import { isValidTask } from './resolution';

/** The verdict of `tasks validate` on one instance: valid when gold resolves and the empty patch does not. */
export interface InstanceVerdict {
  instanceId: string;
  valid: boolean;
  gold: GradeSummary | { error: string };
  empty: GradeSummary | { error: string };
  /** Why the instance is not valid, in words a task author can act on. */
  problem?: string;
}

export function verdictFor(
  instanceId: string,
  gold: GradeSummary | { error: string },
  empty: GradeSummary | { error: string },
): InstanceVerdict {
  const problems: string[] = [];
  if ('error' in gold) problems.push(`gold grading failed: ${gold.error}`);
  else if (!gold.resolved)
    problems.push(`gold patch does not resolve${gold.reason ? ` (${gold.reason})` : ''}`);
  if ('error' in empty) problems.push(`empty-patch grading failed: ${empty.error}`);
  else if (empty.resolved)
    problems.push('empty patch already resolves (FAIL_TO_PASS tests pass without a fix)');
  const valid = !('error' in gold) && !('error' in empty) && isValidTask(gold.resolved, empty.resolved);
  const verdict: InstanceVerdict = { instanceId, valid, gold, empty };
  if (problems.length > 0) verdict.problem = problems.join('; ');
  return verdict;
}

export interface ValidationProgress {
  runId: string;
  stage: 'loading' | 'grading' | 'reporting' | 'done';
  instances: number;
  gradingsTotal: number;
  gradingsDone: number;
  valid: number;
  invalid: number;
}

export function renderValidationMarkdown(runId: string, verdicts: readonly InstanceVerdict[]): string {
  const valid = verdicts.filter((v) => v.valid).length;
  const lines = [
    `# Task validation: ${runId}`,
    '',
    `${valid} of ${verdicts.length} instances valid (gold patch resolves, empty patch does not).`,
    '',
    '| instance | valid | gold | empty | problem |',
    '| --- | --- | --- | --- | --- |',
  ];
  const cell = (g: GradeSummary | { error: string }) =>
    'error' in g
      ? 'error'
      : `${g.resolved ? 'resolved' : 'unresolved'} (${(g.durationMs / 1000).toFixed(1)}s)`;
  for (const v of verdicts) {
    lines.push(
      `| ${v.instanceId} | ${v.valid ? 'yes' : 'no'} | ${cell(v.gold)} | ${cell(v.empty)} | ${v.problem ?? ''} |`,
    );
  }
  return `${lines.join('\n')}\n`;
}

/** One line of progress for a terminal: `grading [#####-----] 5/10 gradings · 4 instances`. */
export function formatValidationProgress(p: ValidationProgress, width = 20): string {
  const fraction = p.gradingsTotal === 0 ? 0 : p.gradingsDone / p.gradingsTotal;
  const filled = Math.round(fraction * width);
  const bar = `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`;
  const tail = p.stage === 'done' ? ` · ${p.valid} valid, ${p.invalid} invalid` : '';
  return `${p.stage.padEnd(9)} ${bar} ${p.gradingsDone}/${p.gradingsTotal} gradings · ${p.instances} instances${tail}`;
}
