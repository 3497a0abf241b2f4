import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseInstancesOrThrow } from '../domain/instance';
import { checkRunConfig, type RunConfigOverride, type ValidateRunConfig } from '../domain/runConfig';
import { InvalidInputError } from '../domain/schemaErrors';
import { formatValidationProgress, type ValidationProgress } from '../domain/validation';
import type { ValidateTasksResult } from '../workflows/validateTasks';
import { readConfigDocument } from './runConfigFile';
import { resultWithProgress, startOrAttach, withSession } from './session';
import { recordValidation, resolveSuite } from './suites';

export interface ValidateOptions {
  config?: string;
  runId?: string;
  concurrency?: number;
  testTimeout?: number;
  /** Sandbox backend of the run (`local` or `docker`). */
  backend?: string;
  /** Run in-process workers when using the embedded server (default true). */
  worker: boolean;
  /** Start the run and return without waiting. */
  detach?: boolean;
}

export function validateWorkflowId(runId: string): string {
  return `validate/${runId}`;
}

/** Builds the run config from a config file and command-line overrides, and checks it. */
export function buildValidateConfig(instances: string, options: ValidateOptions): ValidateRunConfig {
  const overrides: RunConfigOverride[] = [];
  if (options.runId !== undefined)
    overrides.push({ field: 'runId', value: options.runId, option: '--run-id' });
  if (options.concurrency !== undefined)
    overrides.push({ field: 'grading.concurrency', value: options.concurrency, option: '--concurrency' });
  if (options.testTimeout !== undefined)
    overrides.push({ field: 'grading.testTimeoutSec', value: options.testTimeout, option: '--test-timeout' });
  if (options.backend !== undefined)
    overrides.push({ field: 'sandbox.backend', value: options.backend, option: '--backend' });
  // Without --config the document is empty of fields, not an empty document: all defaults.
  const { config, problems } = checkRunConfig(options.config ? readConfigDocument(options.config) : {}, {
    file: options.config,
    instances: path.resolve(instances),
    resolvePath: (file) => path.resolve(file),
    overrides,
  });
  if (!config) throw new InvalidInputError('run config', problems);
  // Check the instance file here too, so that bad input is reported before any work starts.
  if (!fs.existsSync(config.instances) || fs.statSync(config.instances).isDirectory()) {
    const message = fs.existsSync(config.instances) ? 'is a directory, not an instance file' : 'no such file';
    throw new InvalidInputError('instance file', [{ file: instances, field: '', message }]);
  }
  parseInstancesOrThrow(fs.readFileSync(config.instances, 'utf8'), instances);
  if (!config.runId) {
    // Same instances and settings → same run id, so re-running a command resumes (or shows) the same run.
    const hash = createHash('sha256')
      .update(JSON.stringify(config))
      .update(fs.readFileSync(config.instances));
    // Named after the suite directory when the file is a suite's instances.jsonl.
    const base = path.basename(instances).replace(/\.[^.]*$/, '');
    const name = base === 'instances' ? path.basename(path.dirname(path.resolve(instances))) || base : base;
    config.runId = `validate-${name}-${hash.digest('hex').slice(0, 10)}`;
  }
  return config;
}

export async function runValidate(suiteOrFile: string, options: ValidateOptions): Promise<number> {
  // A suite (directory or name under tasks/) or an instance file; a suite's manifest records the result.
  const suite = resolveSuite(suiteOrFile);
  const instances = suite.instancesFile;
  const config = buildValidateConfig(instances, options);
  const started = performance.now();
  const log = (line: string) => process.stderr.write(`${line}\n`);
  return withSession(
    { workerRoles: options.worker && !process.env.TEMPORAL_ADDRESS ? ['cpu', 'sandbox'] : [], log },
    async (session) => {
      const workflowId = validateWorkflowId(config.runId!);
      const handle = await startOrAttach(
        session,
        { type: 'validateTasksWorkflow', workflowId, config, runId: config.runId!, again: 'validate again' },
        log,
      );
      log(`run ${config.runId} · workflow ${workflowId}`);
      if (options.detach) return 0;
      const result = await resultWithProgress<ValidationProgress, ValidateTasksResult>(
        handle,
        formatValidationProgress,
      );
      printValidateResult(result);
      recordValidation(suite, {
        at: new Date().toISOString(),
        valid: result.valid.length,
        invalid: result.invalid,
        report: result.report.markdownPath,
        seconds: Math.round((performance.now() - started) / 100) / 10,
      });
      return validateExitCode(result);
    },
  );
}

/** 3 when any instance could not be judged (infrastructure failed), else 1 when any is invalid, else 0. */
export function validateExitCode(result: ValidateTasksResult): number {
  if ((result.errors ?? []).length > 0) return 3;
  return result.invalid.length === 0 ? 0 : 1;
}

export function printValidateResult(result: ValidateTasksResult): void {
  const out = (line: string) => process.stdout.write(`${line}\n`);
  const errors = result.errors ?? [];
  const unjudged = errors.length > 0 ? `; ${errors.length} could not be judged` : '';
  out(`${result.valid.length} of ${result.instances} instances valid${unjudged}`);
  for (const id of result.valid) out(`  valid    ${id}`);
  for (const { instanceId, problem } of result.invalid) out(`  INVALID  ${instanceId}: ${problem}`);
  for (const { instanceId, cause } of errors) out(`  ERROR    ${instanceId}: ${cause}`);
  if (errors.length > 0) {
    out('errors are failures of the setup (images, sandboxes, workers), not of the tasks: fix the cause and');
    out('validate again with another --run-id');
  }
  out(`report: ${result.report.markdownPath}`);
}
