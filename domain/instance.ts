import { z } from 'zod';
import { readJsonRows } from './jsonRows';
import { SANDBOX_BACKENDS, type SandboxBackendName } from './runConfig';
import { type InputProblem, InvalidInputError, problemsFromZod } from './schemaErrors';

/**
 * A task instance in SWE-bench's field layout, plus where its code comes from and how its tests run.
 * Official SWE-bench / SWE-bench Verified / Lite exports load as they are.
 */

/** Where a sandbox gets the repository at `base_commit`. */
export const instanceSourceSchema = z.discriminatedUnion('kind', [
  /** A local git repository that contains `base_commit`. Relative paths resolve against the instance file. */
  z.strictObject({ kind: z.literal('git'), path: z.string().min(1) }),
  /** A tarball of the repository (with its `.git`), unpacked per sandbox. */
  z.strictObject({ kind: z.literal('tarball'), path: z.string().min(1) }),
  /** A docker image holding the repository (used by the docker backend). */
  z.strictObject({ kind: z.literal('docker_image'), image: z.string().min(1) }),
]);
export type InstanceSource = z.infer<typeof instanceSourceSchema>;

/** What is wrong with a value given as a test list, in words a user can act on. */
function testListProblem(value: unknown): string {
  const expected =
    'must be a list of test ids (strings), or a JSON string encoding one, e.g. ["tests/test_a.py::test_b"]';
  const kind = (v: unknown) =>
    v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v === 'object' ? 'an object' : `a ${typeof v}`;
  if (value === undefined) return `missing; it ${expected}`;
  let list = value;
  if (typeof value === 'string') {
    try {
      list = JSON.parse(value);
    } catch {
      return `${expected}; this string is not JSON: ${JSON.stringify(value.slice(0, 60))}`;
    }
    if (!Array.isArray(list)) return `${expected}; this string encodes ${kind(list)}`;
  }
  if (Array.isArray(list)) {
    const bad = list.findIndex((t) => typeof t !== 'string');
    return `${expected}; item ${bad + 1} is ${kind(list[bad])}: ${JSON.stringify(list[bad])?.slice(0, 60)}`;
  }
  return `${expected}, not ${kind(value)}`;
}

/** SWE-bench stores test lists as JSON-encoded strings; other exports use plain lists. Accept both. */
const testList = z.union(
  [
    z.array(z.string()),
    z.string().transform((text, ctx) => {
      try {
        const parsed: unknown = JSON.parse(text);
        if (Array.isArray(parsed) && parsed.every((t) => typeof t === 'string')) return parsed as string[];
      } catch {
        // reported below
      }
      ctx.addIssue({ code: 'custom', message: testListProblem(text) });
      return z.NEVER;
    }),
  ],
  // zod's own word for a failed union is "Invalid input"; say which shape is wanted and what is wrong.
  { error: (issue) => testListProblem(issue.input) },
);

/** How a test log is read: pytest ids (`path::Class::test`), or R2E-Gym's (`Class.test`). */
export const LOG_PARSERS = ['pytest', 'pytest-r2e'] as const;

export const instanceSchema = z.strictObject({
  instance_id: z.string().min(1),
  repo: z.string().min(1),
  base_commit: z.string().regex(/^[0-9a-f]{7,40}$/, 'must be a git commit hash'),
  patch: z.string(),
  test_patch: z.string(),
  problem_statement: z.string(),
  FAIL_TO_PASS: testList,
  PASS_TO_PASS: testList,
  // Optional official SWE-bench fields, kept as they are.
  version: z.union([z.string(), z.number()]).optional(),
  hints_text: z.string().optional(),
  created_at: z.string().optional(),
  environment_setup_commit: z.string().optional(),
  difficulty: z.string().optional(),
  // Ours: where the code comes from and how tests run.
  source: instanceSourceSchema.optional(),
  /** Runs this instance on this sandbox backend whatever the run's default (`sandbox.backend`). */
  sandbox_backend: z.enum(SANDBOX_BACKENDS).optional(),
  /** Shell command run in the repository root to produce the test log. */
  test_command: z.string().min(1).optional(),
  log_parser: z.enum(LOG_PARSERS).default('pytest'),
});
export type TaskInstance = z.infer<typeof instanceSchema>;

export interface ParsedInstances {
  instances: TaskInstance[];
  problems: InputProblem[];
}

/**
 * Parses a JSONL file (one instance per line) or a JSON array of instances. Every problem is collected
 * with its file, line (and 1-based element number in a JSON array), and field.
 */
export function parseInstances(text: string, file: string): ParsedInstances {
  const { rows, problems } = readJsonRows(text, file);
  const instances: TaskInstance[] = [];
  const seen = new Map<string, string>();
  for (const { line, element, value } of rows) {
    const where = element === undefined ? { file, line } : { file, line, element };
    const result = instanceSchema.safeParse(value);
    if (!result.success) {
      problems.push(...problemsFromZod(result.error, where));
      continue;
    }
    const first = seen.get(result.data.instance_id);
    if (first !== undefined) {
      problems.push({ ...where, field: 'instance_id', message: `duplicate of ${first}` });
      continue;
    }
    seen.set(result.data.instance_id, element === undefined ? `line ${line}` : `element ${element}`);
    instances.push(result.data);
  }
  if (rows.length === 0 && problems.length === 0) {
    problems.push({ file, field: '', message: 'no instances in file' });
  }
  return { instances, problems };
}

/** Like {@link parseInstances} but throws {@link InvalidInputError} naming every problem. */
export function parseInstancesOrThrow(text: string, file: string): TaskInstance[] {
  const { instances, problems } = parseInstances(text, file);
  if (problems.length > 0) throw new InvalidInputError(`instance file ${file}`, problems);
  return instances;
}

/** Files a unified diff touches (the `b/` side; `a/` side for deletions). */
export function filesInPatch(patch: string): string[] {
  const files = new Set<string>();
  for (const match of patch.matchAll(/^diff --git a\/(\S+) b\/(\S+)$/gm)) files.add(match[2]!);
  return [...files];
}

/**
 * The docker image holding an instance's repository at its base commit: the one its source names, else
 * SWE-bench's local name for an instance image (`sweb.eval.x86_64.<id, lower case>:latest`), which
 * `entropo tasks images` builds from the instance's git or tarball source.
 */
export function taskImageName(instance: Pick<TaskInstance, 'instance_id' | 'source'>): string {
  if (instance.source?.kind === 'docker_image') return instance.source.image;
  return `sweb.eval.x86_64.${instance.instance_id.toLowerCase()}:latest`;
}

/** Which backend sandboxes an instance: a docker image source forces docker; else its own choice, else the run's. */
export function sandboxBackendFor(
  instance: Pick<TaskInstance, 'sandbox_backend' | 'source'>,
  runDefault: SandboxBackendName,
): SandboxBackendName {
  if (instance.source?.kind === 'docker_image') return 'docker';
  return instance.sandbox_backend ?? runDefault;
}
