import type { GradeSummary } from './grading';
import { isValidTask } from './resolution';

/** A grading that ended in an error instead of a result. */
export interface GradingFailure {
  /** The innermost failure message: what went wrong, in the words of whoever noticed. */
  error: string;
  /**
   * The failure's type: an ApplicationFailure's type (`InvalidInstance`, `DockerImageMissingError`, …),
   * `TimeoutFailure` when the sandbox's worker stopped answering, or an error's name.
   */
  errorType?: string;
}

export type GradingOutcome = GradeSummary | GradingFailure;

/**
 * Failure types that blame the task: its instance cannot be graded as written (no source, no test command,
 * a base commit its repository lacks). Every other failure (a missing image, a sandbox or worker that
 * cannot run, timeouts, retries exhausted) says nothing about the task: the instance could not be judged.
 */
export const TASK_FAULT_TYPES: readonly string[] = ['InvalidInstance', 'BaseCommitMissingError'];

export function isTaskFault(failure: GradingFailure): boolean {
  return failure.errorType !== undefined && TASK_FAULT_TYPES.includes(failure.errorType);
}

/**
 * The verdict of `tasks validate` on one instance:
 *   valid   – the gold patch resolves and the empty patch does not;
 *   invalid – a grading shows the task is broken (gold does not resolve, empty does, or the instance
 *             cannot be graded as written);
 *   error   – the instance could not be judged (infrastructure failed); it says nothing about the task.
 */
export interface InstanceVerdict {
  instanceId: string;
  outcome: 'valid' | 'invalid' | 'error';
  /** `outcome === 'valid'`. */
  valid: boolean;
  gold: GradingOutcome;
  empty: GradingOutcome;
  /** Why the instance is invalid or could not be judged, in words a task author can act on. */
  problem?: string;
}

export function verdictFor(instanceId: string, gold: GradingOutcome, empty: GradingOutcome): InstanceVerdict {
  const taskProblems: string[] = [];
  const infrastructureProblems: string[] = [];
  const failed = (which: string, failure: GradingFailure) => {
    if (isTaskFault(failure)) taskProblems.push(`${which} grading failed: ${failure.error}`);
    else infrastructureProblems.push(`${which} grading could not run: ${failure.error}`);
  };
  if ('error' in gold) failed('gold', gold);
  else if (!gold.resolved)
    taskProblems.push(`gold patch does not resolve${gold.reason ? ` (${gold.reason})` : ''}`);
  if ('error' in empty) failed('empty-patch', empty);
  else if (empty.resolved)
    taskProblems.push('empty patch already resolves (FAIL_TO_PASS tests pass without a fix)');
  // A finished grading or a fault of the instance proves it invalid whatever else failed; short of that,
  // an infrastructure failure leaves it unjudged.
  let outcome: InstanceVerdict['outcome'];
  if (taskProblems.length > 0) outcome = 'invalid';
  else if ('error' in gold || 'error' in empty) outcome = 'error';
  else outcome = isValidTask(gold.resolved, empty.resolved) ? 'valid' : 'invalid';
  const verdict: InstanceVerdict = { instanceId, outcome, valid: outcome === 'valid', gold, empty };
  const problems = [...taskProblems, ...infrastructureProblems];
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
  /** Instances that could not be judged (absent in runs from before errors were told apart). */
  errors?: number;
}

/** What the report's verdict column says: an instance that could not be judged is neither valid nor invalid. */
const VERDICT_WORDS: Record<InstanceVerdict['outcome'], string> = {
  valid: 'valid',
  invalid: 'INVALID',
  error: 'ERROR (not judged)',
};

export function renderValidationMarkdown(runId: string, verdicts: readonly InstanceVerdict[]): string {
  const valid = verdicts.filter((v) => v.valid).length;
  const lines = [
    `# Task validation: ${runId}`,
    '',
    `${valid} of ${verdicts.length} instances valid (gold patch resolves, empty patch does not).`,
    ...unjudgedLine(verdicts),
    '',
    '| instance | verdict | gold | empty | problem |',
    '| --- | --- | --- | --- | --- |',
  ];
  const cell = (g: GradingOutcome) =>
    'error' in g
      ? 'error'
      : `${g.resolved ? 'resolved' : 'unresolved'} (${(g.durationMs / 1000).toFixed(1)}s)`;
  for (const v of verdicts) {
    lines.push(
      `| ${markdownCell(v.instanceId)} | ${VERDICT_WORDS[v.outcome]} | ${cell(v.gold)} | ${cell(v.empty)} | ${markdownCell(v.problem ?? '')} |`,
    );
  }
  const details = verdicts.flatMap((v) => gradingDetails(runId, v));
  if (details.length > 0) lines.push('', '## Gradings to look at', ...details);
  return `${lines.join('\n')}\n`;
}

/** Text for a table cell: a `|` or a line break in it would end the cell or the row. */
export function markdownCell(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/\r?\n/g, '<br>');
}

/**
 * What a task author needs to see of a grading that went the wrong way (gold unresolved, empty resolved) or
 * that touched the test machinery: why, the first failing tests, and where the full report is.
 */
function gradingDetails(runId: string, verdict: InstanceVerdict): string[] {
  const lines: string[] = [];
  for (const [which, grading] of [
    ['gold', verdict.gold],
    ['empty', verdict.empty],
  ] as const) {
    if ('error' in grading) continue;
    const wrongWay = which === 'gold' ? !grading.resolved : grading.resolved;
    if (!wrongWay && !grading.revertedFiles && !grading.runnerHooks) continue;
    lines.push(
      '',
      `### ${verdict.instanceId}: ${which} patch ${grading.resolved ? 'resolves' : 'does not resolve'}`,
    );
    if (grading.reason && !grading.resolved) lines.push(`- why: ${grading.reason}`);
    const failing = grading.failingTests;
    if (failing && failing.count > 0) {
      const shown = failing.first.map((t) => `\`${t.test}\` (${t.list}, ${t.status})`).join(', ');
      const more =
        failing.count > failing.first.length ? `, and ${failing.count - failing.first.length} more` : '';
      lines.push(`- failing tests (${failing.count}): ${shown}${more}`);
    }
    if (grading.revertedFiles) {
      lines.push(
        `- test machinery reverted before the tests ran (${grading.revertedFiles.count}): ${grading.revertedFiles.first.map((f) => `\`${f}\``).join(', ')}`,
      );
    }
    if (grading.runnerHooks) {
      lines.push(
        `- added lines that reach into the test runner (${grading.runnerHooks.count}): ${grading.runnerHooks.first.join('; ')}`,
      );
    }
    lines.push(
      `- report: ${grading.reportPath ?? grading.reportId} (\`entropo grading show ${runId} ${verdict.instanceId} ${which}\`)`,
    );
  }
  return lines;
}

/** The report's line for instances that could not be judged, if any: they are not task verdicts. */
function unjudgedLine(verdicts: readonly InstanceVerdict[]): string[] {
  const errors = verdicts.filter((v) => v.outcome === 'error').length;
  return errors === 0
    ? []
    : [
        `${errors} could not be judged (infrastructure errors, not task verdicts: fix the setup and validate again).`,
      ];
}

/** One line of progress for a terminal: `grading [#####-----] 5/10 gradings · 4 instances`. */
export function formatValidationProgress(p: ValidationProgress, width = 20): string {
  const fraction = p.gradingsTotal === 0 ? 0 : p.gradingsDone / p.gradingsTotal;
  const filled = Math.round(fraction * width);
  const bar = `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`;
  const errors = p.errors ? `, ${p.errors} could not be judged` : '';
  const tail = p.stage === 'done' ? ` · ${p.valid} valid, ${p.invalid} invalid${errors}` : '';
  return `${p.stage.padEnd(9)} ${bar} ${p.gradingsDone}/${p.gradingsTotal} gradings · ${p.instances} instances${tail}`;
}
