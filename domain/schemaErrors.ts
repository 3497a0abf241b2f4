import type { z } from 'zod';

/** One problem with user input, located precisely enough to fix it without guessing. */
export interface InputProblem {
  /** File the problem is in, when the input came from a file. */
  file?: string;
  /** 1-based line (JSONL) or element index (JSON array) within the file. */
  line?: number;
  /** Dotted path of the offending field, e.g. `sandbox.commandTimeoutSec`; empty for the whole document. */
  field: string;
  message: string;
}

export function fieldPath(path: readonly PropertyKey[]): string {
  return path
    .map((p) => (typeof p === 'number' ? `[${p}]` : String(p)))
    .join('.')
    .replace(/\.\[/g, '[');
}

/** Flattens zod issues into problems, expanding "unrecognized keys" into one problem per unknown field. */
export function problemsFromZod(
  error: z.ZodError,
  where: { file?: string; line?: number } = {},
): InputProblem[] {
  const problems: InputProblem[] = [];
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        problems.push({ ...where, field: fieldPath([...issue.path, key]), message: 'unknown field' });
      }
    } else {
      problems.push({ ...where, field: fieldPath(issue.path), message: issue.message });
    }
  }
  return problems;
}

export function formatProblem(p: InputProblem): string {
  const location = [p.file, p.line !== undefined ? `line ${p.line}` : undefined].filter(Boolean).join(':');
  const field = p.field ? `field "${p.field}"` : 'document';
  return `${location ? `${location}: ` : ''}${field}: ${p.message}`;
}

/** `invalid <what>:` followed by one indented line per problem. */
export function describeProblems(what: string, problems: readonly InputProblem[]): string {
  return `invalid ${what}:\n${problems.map((p) => `  - ${formatProblem(p)}`).join('\n')}`;
}

/** Thrown when user input is invalid; carries every problem found, not just the first. */
export class InvalidInputError extends Error {
  constructor(
    readonly what: string,
    readonly problems: InputProblem[],
  ) {
    super(describeProblems(what, problems));
    this.name = 'InvalidInputError';
  }
}
