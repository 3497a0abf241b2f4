import { z } from 'zod';
import { instanceSchema, type TaskInstance } from './instance';
import { readJsonRows } from './jsonRows';
import { type InputProblem, problemsFromZod } from './schemaErrors';

/**
 * Importers from the formats users bring. Every bad row is reported with its file, line and field; the
 * caller skips bad rows only when asked (`--skip-invalid`). Imported instances keep their original ids.
 *
 *   swebench  SWE-bench / Verified / Lite / SWE-Gym JSON or JSONL as exported (FAIL_TO_PASS / PASS_TO_PASS
 *             as JSON strings or lists). Fields we do not use (e.g. Multimodal's `image_assets`) are
 *             dropped with a note. Images follow SWE-bench's names (`sweb.eval.x86_64.<id>`).
 *   r2e-gym   R2E-Gym rows: `docker_image`, `commit_hash`, `repo_name`, `problem_statement`,
 *             `expected_output_json` (test name → status, as R2E's run_tests.sh reports them).
 */

export const IMPORT_FORMATS = ['swebench', 'r2e-gym'] as const;
export type ImportFormat = (typeof IMPORT_FORMATS)[number];

export interface ImportOptions {
  /** Test command for every instance (SWE-bench exports carry none; their harness builds one per repo). */
  testCommand?: string;
}

export interface ImportResult {
  instances: TaskInstance[];
  /** Problems that make a row unusable (the row is not in `instances`). */
  problems: InputProblem[];
  /** Rows with problems: their lines, or their element numbers in a JSON array. */
  badLines: number[];
  /** Harmless remarks (dropped fields). */
  notes: string[];
  rows: number;
}

const KNOWN_SWEBENCH_FIELDS = new Set(Object.keys(instanceSchema.shape));

function fromSwebench(
  row: Record<string, unknown>,
  options: ImportOptions,
): { value: unknown; dropped: string[] } {
  const dropped = Object.keys(row).filter((k) => !KNOWN_SWEBENCH_FIELDS.has(k));
  const value: Record<string, unknown> = Object.fromEntries(
    Object.entries(row).filter(([k]) => KNOWN_SWEBENCH_FIELDS.has(k)),
  );
  if (options.testCommand && value.test_command === undefined) value.test_command = options.testCommand;
  return { value, dropped };
}

const r2eRowSchema = z.looseObject({
  repo_name: z.string().min(1),
  docker_image: z.string().min(1),
  commit_hash: z.string().regex(/^[0-9a-f]{7,40}$/, 'must be a git commit hash'),
  problem_statement: z.string(),
  expected_output_json: z.union([z.string(), z.record(z.string(), z.string())]),
  instance_id: z.string().optional(),
  patch: z.string().optional(),
});

function fromR2e(
  row: unknown,
  options: ImportOptions,
  where: { file: string; line: number; element?: number },
): { value?: unknown; problems: InputProblem[] } {
  const parsed = r2eRowSchema.safeParse(row);
  if (!parsed.success) return { problems: problemsFromZod(parsed.error, where) };
  const r = parsed.data;
  let expected: Record<string, string>;
  try {
    expected =
      typeof r.expected_output_json === 'string'
        ? (JSON.parse(r.expected_output_json) as Record<string, string>)
        : r.expected_output_json;
  } catch (e) {
    return {
      problems: [
        { ...where, field: 'expected_output_json', message: `not valid JSON: ${(e as Error).message}` },
      ],
    };
  }
  const passing = Object.entries(expected)
    .filter(([, status]) => status === 'PASSED')
    .map(([name]) => name)
    .sort();
  if (passing.length === 0) {
    return {
      problems: [{ ...where, field: 'expected_output_json', message: 'no test is expected to pass' }],
    };
  }
  return {
    problems: [],
    value: {
      instance_id: r.instance_id ?? `${r.repo_name}__${r.commit_hash.slice(0, 12)}`,
      repo: r.repo_name,
      base_commit: r.commit_hash,
      patch: r.patch ?? '',
      test_patch: '',
      problem_statement: r.problem_statement,
      // R2E-Gym grades by the whole expected output and does not say which tests the fix flips: every
      // test expected to pass must pass.
      FAIL_TO_PASS: passing,
      PASS_TO_PASS: [],
      source: { kind: 'docker_image', image: r.docker_image },
      test_command: options.testCommand ?? 'bash run_tests.sh',
      log_parser: 'pytest-r2e',
    },
  };
}

/** Converts a file's text; pure. */
export function importInstances(
  text: string,
  file: string,
  format: ImportFormat,
  options: ImportOptions = {},
): ImportResult {
  const { rows, problems } = readJsonRows(text, file);
  const result: ImportResult = {
    instances: [],
    problems,
    badLines: problems.map((p) => p.line ?? 0),
    notes: [],
    rows: rows.length,
  };
  const seen = new Map<string, number>();
  const droppedFields = new Set<string>();
  for (const { line: startLine, element, value } of rows) {
    const where = element === undefined ? { file, line: startLine } : { file, line: startLine, element };
    const line = element ?? startLine; // the row's key in badLines
    let candidate: unknown;
    if (format === 'swebench') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        result.problems.push({ ...where, field: '', message: 'expected a JSON object' });
        result.badLines.push(line);
        continue;
      }
      const converted = fromSwebench(value as Record<string, unknown>, options);
      for (const f of converted.dropped) droppedFields.add(f);
      candidate = converted.value;
    } else {
      const converted = fromR2e(value, options, where);
      if (converted.problems.length > 0) {
        result.problems.push(...converted.problems);
        result.badLines.push(line);
        continue;
      }
      candidate = converted.value;
    }
    const parsed = instanceSchema.safeParse(candidate);
    if (!parsed.success) {
      result.problems.push(...problemsFromZod(parsed.error, where));
      result.badLines.push(line);
      continue;
    }
    const first = seen.get(parsed.data.instance_id);
    if (first !== undefined) {
      const of = element === undefined ? 'line' : 'element';
      result.problems.push({ ...where, field: 'instance_id', message: `duplicate of ${of} ${first}` });
      result.badLines.push(line);
      continue;
    }
    seen.set(parsed.data.instance_id, line);
    result.instances.push(parsed.data);
  }
  if (droppedFields.size > 0)
    result.notes.push(`fields not used and dropped: ${[...droppedFields].sort().join(', ')}`);
  return result;
}
