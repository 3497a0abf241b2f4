import { z } from 'zod';
import { InvalidInputError, problemsFromZod } from './schemaErrors';

/**
 * Task suites: a directory with `instances.jsonl` (SWE-bench format), `manifest.json` (where the tasks
 * came from, versions, seed, counts, build and validation results) and, for built suites, `repos/`.
 * A build spec (`tasks/suites/<name>.json`) says which pinned packages a procedural suite is made of.
 */

export const suitePackageSchema = z.strictObject({
  /** PyPI distribution name. */
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/),
  /** Exact version; the sdist of this version is fetched. */
  version: z.string().min(1),
  /** sha256 of the sdist; pip refuses any other file. */
  sha256: z
    .string()
    .regex(/^[0-9a-f]{64}$/, 'the sdist sha256 (64 hex digits)')
    .optional(),
  /**
   * A local source tree instead of PyPI (your own package; the builder's tests), relative to the spec
   * file. The bundled suites never use it.
   */
  localPath: z.string().min(1).optional(),
  /** `owner/name` of the upstream repository, for the instances' `repo` field. */
  repo: z.string().regex(/^[^/\s]+\/[^/\s]+$/, 'owner/name'),
  /** Files or directories (relative to the sdist root) whose functions may be mutated. */
  sourcePaths: z.array(z.string().min(1)).min(1),
  /** PYTHONPATH for the tests, relative to the repository root (`src` for src layouts). */
  pythonPath: z.string().default('.'),
  /** What pytest runs (files or directories). */
  testPaths: z.array(z.string().min(1)).min(1),
  /** Tasks to keep from this package. */
  tasks: z.number().int().min(1).max(500),
  /** Mutations tried at most before giving up on reaching `tasks`. */
  maxTries: z.number().int().min(1).max(100_000).default(300),
});
export type SuitePackage = z.infer<typeof suitePackageSchema>;

const packageWithSource = suitePackageSchema.refine(
  (p) => (p.sha256 === undefined) !== (p.localPath === undefined),
  {
    message: 'give exactly one of sha256 (a PyPI sdist) and localPath (a local source tree)',
    path: ['sha256'],
  },
);

export const suiteSpecSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/),
  description: z.string().default(''),
  /** Orders the mutations tried; the same seed builds the same suite. */
  seed: z
    .number()
    .int()
    .min(0)
    .max(2 ** 31),
  packages: z.array(packageWithSource).min(1),
  /** A held-out (test) suite: no teacher ever reads its gold patches (the demonstrator refuses it). */
  heldOut: z.boolean().optional(),
});
export type SuiteSpec = z.infer<typeof suiteSpecSchema>;

export function parseSuiteSpec(value: unknown, file: string): SuiteSpec {
  const result = suiteSpecSchema.safeParse(value);
  if (!result.success)
    throw new InvalidInputError(`suite spec ${file}`, problemsFromZod(result.error, { file }));
  return result.data;
}

/**
 * The test command of a package's tasks, the same in both sandbox backends. PYTHONHASHSEED is fixed
 * because some suites parametrize over sets, and their test ids (`test_x[expected6]`) would otherwise
 * change from run to run. `pythonPathExtra` and `args` are for the builder's own runs (tracer, one test).
 */
export function packageTestCommand(
  pkg: Pick<SuitePackage, 'pythonPath' | 'testPaths'>,
  options: { pythonPathExtra?: string; args?: string[]; tests?: string[] } = {},
): string {
  const pythonPath = options.pythonPathExtra
    ? `${pkg.pythonPath}:${options.pythonPathExtra}`
    : pkg.pythonPath;
  const args = options.args ?? ['-rA'];
  const tests = options.tests ?? pkg.testPaths;
  return `PYTHONHASHSEED=0 PYTHONPATH=${pythonPath} python -m pytest ${[...args, '-p', 'no:cacheprovider', ...tests].join(' ')}`;
}

export const suiteManifestSchema = z.object({
  name: z.string(),
  description: z.string().default(''),
  /** How the instances were made. */
  source: z.enum(['procedural', 'curated', 'swebench', 'r2e-gym', 'split']),
  createdAt: z.string(),
  instancesFile: z.string().default('instances.jsonl'),
  instanceCount: z.number().int(),
  seed: z.number().int().optional(),
  packages: z
    .array(
      z.object({
        name: z.string(),
        version: z.string(),
        sha256: z.string().optional(),
        instances: z.number().int(),
      }),
    )
    .optional(),
  /** Importers: the file read and rows skipped with `--skip-invalid`. */
  imported: z.object({ file: z.string(), rows: z.number().int(), skipped: z.array(z.string()) }).optional(),
  /** Splits: the suite it came from and the rule. */
  split: z.object({ from: z.string(), by: z.string(), part: z.string(), seed: z.number().int() }).optional(),
  /** A held-out (test) suite: its gold patches and hidden tests never reach a policy, verifier or selector. */
  heldOut: z.boolean().optional(),
  /** Procedural builds: mutations tried and kept, why the others were refused, time per task. */
  build: z
    .object({
      tried: z.number().int(),
      kept: z.number().int(),
      refused: z.record(z.string(), z.number().int()),
      seconds: z.number(),
    })
    .optional(),
  /** Set by `entropo tasks validate` on the suite. */
  validation: z
    .object({
      at: z.string(),
      valid: z.number().int(),
      invalid: z.array(z.object({ instanceId: z.string(), problem: z.string() })),
      report: z.string(),
      seconds: z.number().optional(),
    })
    .optional(),
});
export type SuiteManifest = z.infer<typeof suiteManifestSchema>;

/** Whether a suite is held out from training: marked so, or the test part of a split. */
export function isHeldOutSuite(manifest: Pick<SuiteManifest, 'heldOut' | 'split'> | undefined): boolean {
  return manifest?.heldOut === true || manifest?.split?.part === 'test';
}

/** The instance id of a procedural task: `<package>__<package>-<kind>-<site hash>`, SWE-bench's shape. */
export function proceduralInstanceId(packageName: string, kind: string, siteHash: string): string {
  const name = packageName.toLowerCase().replace(/[^a-z0-9]+/g, '-');
  return `${name}__${name}-${kind.replace(/_/g, '-')}-${siteHash.slice(0, 8)}`;
}
