import type { z } from 'zod';

/** One problem with user input, located precisely enough to fix it without guessing. */
export interface InputProblem {
  /** File the problem is in, when the input came from a file. */
  file?: string;
  /** 1-based line within the file. */
  line?: number;
  /** 1-based element number, when the file is a JSON array. */
  element?: number;
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
  where: { file?: string; line?: number; element?: number } = {},
): InputProblem[] {
  const problems: InputProblem[] = [];
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        problems.push({ ...where, field: fieldPath([...issue.path, key]), message: 'unknown field' });
      }
    } else {
      // zod says "object" where a YAML user thinks "mapping", and calls a missing field `undefined`.
      const message =
        issue.code === 'invalid_type'
          ? issue.message
              .replace(
                /^Invalid input: expected object, received (\w+)$/,
                'expected a mapping of fields, got $1',
              )
              .replace(/^(Invalid input: expected \w+), received undefined$/, '$1, the field is missing')
          : issue.message;
      problems.push({ ...where, field: fieldPath(issue.path), message });
    }
  }
  return problems;
}

export function formatProblem(p: InputProblem): string {
  const location = [
    p.file,
    p.line !== undefined ? `line ${p.line}` : undefined,
    p.element !== undefined && p.line === undefined ? `element ${p.element}` : undefined,
  ]
    .filter(Boolean)
    .join(':');
  const element = p.element !== undefined && p.line !== undefined ? ` (element ${p.element})` : '';
  const field = p.field ? `field "${p.field}"` : 'document';
  return `${location ? `${location}${element}: ` : ''}${field}: ${p.message}`;
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
