import { z } from 'zod';
import { type InputProblem, InvalidInputError, problemsFromZod } from './schemaErrors';

/**
 * The run config: one JSON (or YAML) document that is also the workflow input, so the same file works
 * with `entropo … --config run.json` and `temporal workflow start --input-file run.json`.
 * Every field has a default except the ones that name the user's data.
 */

export const SANDBOX_BACKENDS = ['local', 'docker'] as const;
export type SandboxBackendName = (typeof SANDBOX_BACKENDS)[number];

/** Resources one sandbox may use; the same limits apply on both backends (cgroups under bwrap, Docker's own). */
export const sandboxLimitsSchema = z.strictObject({
  /** Memory of every process in the sandbox together; past it the kernel's OOM killer stops the hog. */
  memoryMb: z.number().int().min(16).max(1_048_576).default(2048),
  /** CPU time per wall-clock second, in cores. */
  cpus: z.number().positive().max(1024).default(1),
  /** Processes and threads at once; stops fork bombs. */
  pids: z.number().int().min(8).max(1_000_000).default(512),
});
export type SandboxLimits = z.infer<typeof sandboxLimitsSchema>;

export const dockerConfigSchema = z.strictObject({
  /**
   * The Docker engine to talk to, as in `DOCKER_HOST` (`unix:///var/run/docker.sock`, `tcp://host:2375`).
   * Unset: the worker's `DOCKER_HOST`, else the local socket.
   */
  host: z
    .string()
    .regex(/^(unix|tcp|http|https|ssh):\/\//, 'a DOCKER_HOST address such as unix:///var/run/docker.sock')
    .optional(),
  /** Where the repository lives in task images (SWE-bench's images use /testbed). */
  workdir: z
    .string()
    .regex(/^\/[^\0]*$/, 'an absolute path')
    .default('/testbed'),
  /**
   * The image's filesystem is read-only except the repository (a volume seeded from the image) and /tmp,
   * as in the local sandbox. Turn off for images whose tests must write elsewhere.
   */
  readOnlyRootfs: z.boolean().default(true),
  /** Size of the in-memory /tmp. */
  tmpfsMb: z.number().int().min(1).max(65_536).default(512),
});
export type DockerConfig = z.infer<typeof dockerConfigSchema>;

export const sandboxConfigSchema = z.strictObject({
  /**
   * Default sandbox backend of the run: `local` is bubblewrap over a per-sandbox copy of the repository,
   * `docker` a container from the task's image. An instance can choose its own (`sandbox_backend`), and one
   * whose code comes from a docker image always runs in docker.
   */
  backend: z.enum(SANDBOX_BACKENDS).default('local'),
  limits: sandboxLimitsSchema.prefault({}),
  docker: dockerConfigSchema.prefault({}),
  /** Wall-clock limit of one command in a sandbox; the whole process tree is killed when it passes. */
  commandTimeoutSec: z.number().positive().max(86_400).default(120),
  /** Bytes of stdout (and, separately, stderr) kept per command; the middle of longer output is cut. */
  outputLimitBytes: z
    .number()
    .int()
    .min(1024)
    .max(64 * 1024 * 1024)
    .default(64 * 1024),
  /** A sandbox activity that has not heartbeat for this long is considered lost with its worker. */
  heartbeatTimeoutSec: z.number().positive().max(3600).default(30),
  /** How many times a grading whose sandbox worker vanished is restarted in a fresh sandbox. */
  maxSandboxRestarts: z.number().int().min(0).max(20).default(3),
});
export type SandboxConfig = z.infer<typeof sandboxConfigSchema>;

export const gradingConfigSchema = z.strictObject({
  /** Wall-clock limit of the test command when grading; a hang is graded unresolved. */
  testTimeoutSec: z.number().positive().max(86_400).default(900),
  /** Gradings running at once (each in its own sandbox). */
  concurrency: z.number().int().min(1).max(1000).default(2),
});
export type GradingConfig = z.infer<typeof gradingConfigSchema>;

export const RUN_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

export const validateRunConfigSchema = z.strictObject({
  /** Names the run; re-using it attaches to (or resumes) the same run. Defaults to the workflow id. */
  runId: z.string().regex(RUN_ID_PATTERN, 'letters, digits, ".", "_", "-" only (max 100)').optional(),
  /** Path of a SWE-bench JSON/JSONL instance file, relative to the worker's working directory. */
  instances: z.string().min(1),
  sandbox: sandboxConfigSchema.prefault({}),
  grading: gradingConfigSchema.prefault({}),
});
export type ValidateRunConfig = z.infer<typeof validateRunConfigSchema>;
export type ValidateRunConfigInput = z.input<typeof validateRunConfigSchema>;

/** A command-line option that replaces a field of the document (`--concurrency 4` → `grading.concurrency`). */
export interface RunConfigOverride {
  /** Dotted path of the field, e.g. `grading.concurrency`. */
  field: string;
  value: unknown;
  /** The option as the user typed it, named in problems with its value. */
  option: string;
}

export interface RunConfigCheckOptions {
  /** The file the document came from, named in every problem that is in it. */
  file?: string;
  /** Command-line options; they replace the document's fields. */
  overrides?: readonly RunConfigOverride[];
  /**
   * The instance file named on the command line. It is the run's `instances`; a document that names
   * another file is a conflict to report, not something to drop silently.
   */
  instances?: string;
  /** How the caller resolves an instance path to compare the two (the CLI: against its working directory). */
  resolvePath?: (file: string) => string;
}

/** A run config whose `instances` the command line gives (`config-check` of a config meant for `--config`). */
export type RunConfigWithoutInstances = Omit<ValidateRunConfig, 'instances'> & { instances?: string };

export interface RunConfigCheck<T> {
  /** The config with defaults filled in; absent when there are problems. */
  config?: T;
  problems: InputProblem[];
}

const isMapping = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

function describeValue(value: unknown): string {
  if (value === null || value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  return `a ${typeof value}`;
}

/**
 * The one check of a run config document, used alike by `entropo config-check`, `tasks validate --config`
 * and the workflow (whose input is the document itself), so a config gets the same answer everywhere.
 * Pure: the caller reads the file. Every problem is collected, each naming its field (and file).
 */
export function checkRunConfig(
  document: unknown,
  options?: RunConfigCheckOptions & { instancesOptional?: false },
): RunConfigCheck<ValidateRunConfig>;
export function checkRunConfig(
  document: unknown,
  options: RunConfigCheckOptions & { instancesOptional: true },
): RunConfigCheck<RunConfigWithoutInstances>;
export function checkRunConfig(
  document: unknown,
  options: RunConfigCheckOptions & { instancesOptional?: boolean } = {},
): RunConfigCheck<ValidateRunConfig | RunConfigWithoutInstances> {
  const { file } = options;
  const where = file ? { file } : {};
  if (!isMapping(document)) {
    const message =
      document === null || document === undefined
        ? 'the document is empty; a run config is a mapping of fields (runId, instances, sandbox, grading)'
        : `must be a mapping of fields (runId, instances, sandbox, grading), not ${describeValue(document)}`;
    return { problems: [{ ...where, field: '', message }] };
  }
  const problems: InputProblem[] = [];
  const merged: Record<string, unknown> = { ...document };
  if (options.instances !== undefined) {
    const resolve = options.resolvePath ?? ((f: string) => f);
    const named = document.instances;
    if (typeof named === 'string' && named !== '' && resolve(named) !== resolve(options.instances)) {
      problems.push({
        ...where,
        field: 'instances',
        message: `names ${named} but the command line names ${options.instances}; give the instance file in one place`,
      });
    }
    merged.instances = options.instances;
  }
  const fromOption = new Map<string, RunConfigOverride>();
  for (const override of options.overrides ?? []) {
    // Only into sections that are mappings (or absent): a bad section stays as written and is reported.
    const keys = override.field.split('.');
    let section: Record<string, unknown> = merged;
    let placed = true;
    for (const key of keys.slice(0, -1)) {
      const inner = section[key];
      if (inner === undefined) section[key] = {};
      else if (!isMapping(inner)) {
        placed = false;
        break;
      } else section[key] = { ...inner };
      section = section[key] as Record<string, unknown>;
    }
    if (!placed) continue;
    section[keys[keys.length - 1]!] = override.value;
    fromOption.set(override.field, override);
  }
  const schema = options.instancesOptional
    ? validateRunConfigSchema.partial({ instances: true })
    : validateRunConfigSchema;
  const result = schema.safeParse(merged);
  if (!result.success) {
    for (const problem of problemsFromZod(result.error)) {
      const override = fromOption.get(problem.field);
      problems.push(
        override
          ? { ...problem, message: `${problem.message} (from ${override.option} ${String(override.value)})` }
          : { ...where, ...problem },
      );
    }
  }
  if (problems.length > 0) return { problems };
  return { config: result.data, problems };
}

/** Checks an already-parsed document; throws {@link InvalidInputError} naming every bad field. */
export function validateRunConfig(value: unknown, file?: string): ValidateRunConfig {
  const { config, problems } = checkRunConfig(value, { file });
  if (!config) throw new InvalidInputError('run config', problems);
  return config;
}
