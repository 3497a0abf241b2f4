import * as path from 'node:path';
import { type Client, WorkflowNotFoundError } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { Command, InvalidArgumentError } from 'commander';
import { buildSuite } from '../activities/taskBuilder';
import { innermostCause, rootMessage } from '../domain/failures';
import { parseGpuList } from '../domain/gpuDevices';
import { formatPoolProgress, type RolloutPoolProgress } from '../domain/rolloutPool';
import { checkRunConfig } from '../domain/runConfig';
import { InvalidInputError } from '../domain/schemaErrors';
import { WORKER_ROLES, type WorkerRole } from '../domain/taskQueues';
import { parseSuiteSpec } from '../domain/taskSuite';
import { formatValidationProgress, type ValidationProgress } from '../domain/validation';
import { buildTaskImages } from '../infra/buildImages';
import { adoptDevServer, startDevServer } from '../infra/devServer';
import { createWorkerGroup } from '../workers/worker';
import { runGradingShow } from './grading';
import { rolloutsWorkflowId, runRollouts, showRollouts } from './rollouts';
import { pipelineProgressLine, pipelineWorkflowId, printReport, runPipeline } from './run';
import { readConfigDocument } from './runConfigFile';
import { formatSdkLogEntry } from './sdkLog';
import { temporalSettings, withSession } from './session';
import { resolveSuite, runImport, runList, runShow, runSplit, TASKS_ROOT } from './suites';
import { runValidate, validateWorkflowId } from './validate';

/** `entropo …`: the command-line client. Exit codes: 0 ok, 1 the job found problems, 2 bad input. */

const log = (line: string) => process.stderr.write(`${line}\n`);

// The SDK logs at INFO by default; users want our progress, not its chatter. ENTROPO_LOG_LEVEL=INFO brings it back.
const sdkLogLevel = (process.env.ENTROPO_LOG_LEVEL ?? 'WARN').toUpperCase() as
  | 'TRACE'
  | 'DEBUG'
  | 'INFO'
  | 'WARN'
  | 'ERROR';
Runtime.install({
  logger: new DefaultLogger(sdkLogLevel, (entry) => {
    const line = formatSdkLogEntry(entry);
    if (line) log(line);
  }),
});

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

/** A run by its run id (workflow `validate/<id>`) or its workflow id; exit 2 when there is none. */
async function describeRun(client: Client, runId: string) {
  for (const workflowId of new Set([
    pipelineWorkflowId(runId),
    validateWorkflowId(runId),
    rolloutsWorkflowId(runId),
    runId,
  ])) {
    const handle = client.workflow.getHandle(workflowId);
    try {
      return { handle, description: await handle.describe() };
    } catch (err) {
      if (!(err instanceof WorkflowNotFoundError)) throw err;
    }
  }
  throw new InvalidInputError('run id', [
    {
      field: 'runId',
      message: `no run ${runId} (no workflow ${pipelineWorkflowId(runId)}, ${validateWorkflowId(runId)}, ${rolloutsWorkflowId(runId)} or ${runId}); \`entropo list\` shows the runs`,
    },
  ]);
}

/** The innermost failure (workflow → child → activity → application failure): its type and message. */
function rootFailure(err: unknown): string {
  const { type } = innermostCause(err);
  return type ? `(${type}) ${rootMessage(err)}` : rootMessage(err);
}

function waitForSignal(): Promise<void> {
  return new Promise((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
}

const program = new Command('entropo')
  .description('EntroPO training of SWE agents on Temporal')
  .showHelpAfterError();

program
  .command('server')
  .description(
    'run the embedded Temporal dev server in the foreground (SQLite under .entropo/) and supervise it: exits 1 if the server dies, stops it on SIGINT/SIGTERM (and the server stops if this process is killed)',
  )
  .action(async () => {
    const settings = temporalSettings();
    let server = await startDevServer({ port: settings.port, namespace: settings.namespace });
    const at = `Temporal at ${server.address}${server.uiUrl ? ` · UI ${server.uiUrl}` : ''}`;
    if (!server.owned) {
      const found = server.found;
      if (found?.launcherAlive) {
        log(
          `${at} is already running (pid ${found.serverPid}), supervised by \`${found.launcherCommand}\` (pid ${found.launcherPid}); not starting another`,
        );
        return;
      }
      if (!found?.serverAlive) {
        log(
          `${at} is already running but was not started by entropo, so nothing here can supervise it. ` +
            'Stop it, or set ENTROPO_TEMPORAL_PORT to another port (or TEMPORAL_ADDRESS to use it as is).',
        );
        process.exitCode = 1;
        return;
      }
      // Adopted first (the launcher record names this process), then said: whoever reads the message finds the record.
      server = adoptDevServer(server);
      log(
        `${at}: found an orphaned server (pid ${found.serverPid}) whose launcher (pid ${found.launcherPid}, \`${found.launcherCommand}\`) is gone; adopting it`,
      );
    } else {
      log(`${at} (pid ${server.pid}; log ${server.logFile})`);
    }
    const outcome = await Promise.race([
      waitForSignal().then(() => 'signal' as const),
      server.exited!.then((exit) => exit),
    ]);
    if (outcome === 'signal') {
      log('stopping Temporal…');
      await server.stop();
      return;
    }
    log(
      `the Temporal server (pid ${server.pid}) exited unexpectedly (${outcome.signal ? `signal ${outcome.signal}` : `exit code ${outcome.code ?? 'unknown'}`})` +
        (server.logFile ? `; see ${server.logFile}` : ''),
    );
    process.exit(1);
  });

program
  .command('worker')
  .description('run workers for the given roles until SIGINT/SIGTERM')
  .option('--role <roles...>', `roles: ${WORKER_ROLES.join(', ')}`, ['cpu', 'sandbox'])
  .option('--max-sandboxes <n>', 'sandboxes this worker runs at once', positiveInt)
  .option(
    '--gpus <list>',
    'devices of the gpu role, e.g. 0,1 or cpu (default: CUDA_VISIBLE_DEVICES, else cpu); one queue and one job at a time each',
  )
  .action(async (options: { role: string[]; maxSandboxes?: number; gpus?: string }) => {
    const roles = options.role.flatMap((r) => r.split(','));
    for (const role of roles) {
      if (!WORKER_ROLES.includes(role as WorkerRole)) {
        throw new InvalidInputError('worker role', [
          { field: 'role', message: `unknown role "${role}" (expected ${WORKER_ROLES.join(', ')})` },
        ]);
      }
    }
    let gpus: string[] | undefined;
    if (roles.includes('gpu')) {
      try {
        gpus = parseGpuList(options.gpus, process.env);
      } catch (e) {
        throw new InvalidInputError('worker devices', [{ field: 'gpus', message: (e as Error).message }]);
      }
    }
    const settings = temporalSettings();
    const server = settings.address
      ? undefined
      : await startDevServer({ port: settings.port, namespace: settings.namespace });
    const connection = await NativeConnection.connect({ address: settings.address ?? server!.address });
    const group = await createWorkerGroup({
      connection,
      roles: roles as WorkerRole[],
      namespace: settings.namespace,
      queuePrefix: settings.queuePrefix,
      maxSandboxes: options.maxSandboxes,
      gpus,
      address: settings.address ?? server!.address,
      log,
    });
    log('worker ready');
    await group.run(); // the SDK shuts workers down gracefully on SIGINT/SIGTERM
    await connection.close();
    await server?.stop();
  });

const tasks = program.command('tasks').description('task instances (SWE-bench format)');
tasks
  .command('validate <suite>')
  .description(
    'grade the gold and the empty patch of every instance of a suite (directory, name under tasks/, or instance file); valid = gold resolves, empty does not',
  )
  .option('--config <file>', 'run config (JSON or YAML); command-line options override it')
  .option('--run-id <id>', 'name of the run; the same id resumes or shows the same run')
  .option('--concurrency <n>', 'gradings at once', positiveInt)
  .option('--test-timeout <sec>', 'test command time limit', positiveInt)
  .option('--backend <name>', 'sandbox backend: local (bubblewrap) or docker')
  .option('--no-worker', 'do not run in-process workers (use `entropo worker` processes)')
  .option('--detach', 'start the run and return')
  .action(async (instances: string, options) => {
    process.exitCode = await runValidate(instances, options);
  });

tasks
  .command('build <spec>')
  .description(
    'build a procedural task suite (SWE-smith-style bugs in pinned PyPI packages) from a spec file',
  )
  .option('--out <dir>', 'suite directory (default: tasks/<suite name>)')
  .option('--verbose', 'log every refused mutation with its reason')
  .action(async (specFile: string, options: { out?: string; verbose?: boolean }) => {
    const spec = parseSuiteSpec(readConfigDocument(specFile), specFile);
    const out = path.resolve(options.out ?? path.join('tasks', spec.name));
    const manifest = await buildSuite(spec, out, log, path.dirname(path.resolve(specFile)), {
      verbose: options.verbose,
    });
    log(`wrote ${path.join(out, manifest.instancesFile)} and manifest.json`);
  });

tasks
  .command('import <file>')
  .description('import SWE-bench (JSON/JSONL as exported) or R2E-Gym rows into a suite directory')
  .requiredOption('--format <format>', 'swebench | r2e-gym')
  .requiredOption('--out <dir>', 'suite directory to write')
  .option('--skip-invalid', 'skip bad rows (each is still reported) instead of writing nothing')
  .option('--test-command <cmd>', 'test command for every instance (SWE-bench exports carry none)')
  .action(
    (file: string, options: { format: string; out: string; skipInvalid?: boolean; testCommand?: string }) => {
      process.exitCode = runImport(file, options, log);
    },
  );

tasks
  .command('list')
  .description('list task suites (directories with manifest.json) under tasks/ or --root')
  .option('--root <dir>', 'where to look', TASKS_ROOT)
  .action((options: { root: string }) => {
    process.exitCode = runList(options.root, (line) => process.stdout.write(`${line}\n`));
  });

tasks
  .command('show <suite> [instance]')
  .description('a suite: manifest, build and validation results, instances; or one instance of it')
  .action((suite: string, instance: string | undefined) => {
    process.exitCode = runShow(suite, instance, (line) => process.stdout.write(`${line}\n`));
  });

tasks
  .command('split <suite>')
  .description('split a suite into train and test suites, keeping each package (or module) on one side')
  .option('--by <what>', 'package | module', 'package')
  .option('--test-fraction <f>', 'share of tasks for the test side', Number, 0.25)
  .option('--seed <n>', 'which groups go to test', Number, 0)
  .requiredOption('--train-out <dir>', 'train suite directory')
  .requiredOption('--test-out <dir>', 'test suite directory')
  .action(
    (
      suite: string,
      options: { by: string; testFraction: number; seed: number; trainOut: string; testOut: string },
    ) => {
      process.exitCode = runSplit(suite, options, log);
    },
  );

tasks
  .command('images <suite>')
  .description(
    'build the docker image of every instance whose code is a local git repo or tarball (and the base image)',
  )
  .option('--force', 'rebuild images that exist')
  .action(async (instances: string, options: { force?: boolean }) => {
    const images = await buildTaskImages(resolveSuite(instances).instancesFile, {
      force: options.force,
      log,
    });
    log(`${images.length} image(s) ready`);
  });

program
  .command('status <runId>')
  .description(
    'show the state and progress of a run (its run id, or its workflow id as `entropo list` shows)',
  )
  .action(async (runId: string) => {
    await withSession({ log }, async ({ client }) => {
      const { handle, description } = await describeRun(client, runId);
      process.stdout.write(
        `${runId}: ${description.status.name} (started ${description.startTime.toISOString()})\n`,
      );
      if (description.status.name === 'RUNNING') {
        const line =
          description.type === 'pipelineWorkflow'
            ? await pipelineProgressLine(handle, client)
            : description.type === 'rolloutPoolWorkflow'
              ? formatPoolProgress(await handle.query<RolloutPoolProgress>('progress'))
              : formatValidationProgress(await handle.query<ValidationProgress>('progress'));
        process.stdout.write(`${line}\n`);
      } else if (description.status.name !== 'COMPLETED') {
        // Failed, terminated, timed out or cancelled: say why, from the innermost cause.
        const reason = await handle.result().then(
          () => undefined,
          (err: unknown) => rootFailure(err),
        );
        if (reason) process.stdout.write(`reason: ${reason}\n`);
      }
    });
  });

program
  .command('list')
  .description('list runs known to Temporal')
  .action(async () => {
    await withSession({ log }, async ({ client }) => {
      const query =
        "EntropoStage = 'validate' OR WorkflowType = 'pipelineWorkflow' OR WorkflowType = 'rolloutPoolWorkflow'";
      for await (const run of client.workflow.list({ query })) {
        process.stdout.write(
          `${run.workflowId.padEnd(60)} ${run.status.name.padEnd(12)} ${run.startTime.toISOString()}\n`,
        );
      }
    });
  });

program
  .command('cancel <runId>')
  .description('cancel a run (its sandboxes are cleaned up)')
  .action(async (runId: string) => {
    await withSession({ log }, async ({ client }) => {
      const { handle } = await describeRun(client, runId); // an unknown run is bad input (exit 2)
      await handle.cancel();
      log(`cancel requested for ${runId} (workflow ${handle.workflowId})`);
    });
  });

program
  .command('run <config>')
  .description(
    'run the EntroPO pipeline (SFT → pool → pairs → EntroPO → TTS → selection → report) from a run config; the same run id resumes it',
  )
  .option('--run-id <id>', "the run id (default: the config's runId, else a new one)")
  .option('--detach', 'start it and return (follow with `entropo status <run id>`)')
  .action(async (config: string, options: { runId?: string; detach?: boolean }) => {
    process.exitCode = await runPipeline(config, options);
  });

program
  .command('report <runId>')
  .description("print the summary of a finished run's report and where its files are")
  .action((runId: string) => {
    process.exitCode = printReport(runId);
  });

program
  .command('config-check <file>')
  .description(
    'check a run config file and print it with defaults filled in (instances may be left to the command line)',
  )
  .action((file: string) => {
    // The same check as `tasks validate --config` and the workflow; `instances` may come from the command line.
    const { config, problems } = checkRunConfig(readConfigDocument(file), { file, instancesOptional: true });
    if (!config) throw new InvalidInputError('run config', problems);
    process.stdout.write(`${JSON.stringify(config, null, 2)}\n`);
    if (config.instances === undefined) {
      log(
        `${file}: no instances; name them on the command line: entropo tasks validate <suite> --config ${file}`,
      );
    }
  });

program
  .command('grading')
  .description('gradings: their reports')
  .command('show <report> [instance] [patch]')
  .description(
    "one grading's report (apply log, reverted test machinery, flagged runner hooks, failing tests, test log path): by report id or file, or by a validate run's id, an instance and gold|empty (default gold)",
  )
  .action(async (report: string, instance: string | undefined, patch: string | undefined) => {
    process.exitCode = await runGradingShow(report, instance, patch, (line) =>
      process.stdout.write(`${line}\n`),
    );
  });

const rollouts = program
  .command('rollouts')
  .description('agent episodes of a policy on a suite: N per task, in sandboxes, graded')
  .argument('[suite]', 'suite directory, name under tasks/, or instance file')
  .option(
    '--policy <policy>',
    'an OpenAI-compatible base URL, engine (SmolLM2-135M on this machine) or demonstrator (gold patches; training splits only)',
    'engine',
  )
  .option('--model <name>', 'model or LoRA adapter name sent to the endpoint')
  .option('--api-key-env <var>', "environment variable of the llm worker holding the endpoint's API key")
  .option('-n, --n <n>', 'episodes per task', positiveInt)
  .option('--concurrency <n>', 'episodes at once', positiveInt)
  .option('--max-steps <n>', 'hard step limit per episode', positiveInt)
  .option('--temperature <t>', 'sampling temperature', Number)
  .option('--seed <n>', 'base seed: episode k of task t gets seed + t·n + k', Number)
  .option('--config <file>', 'rollout config (JSON or YAML); command-line options override it')
  .option('--run-id <id>', 'name of the run; the same id resumes or shows the same run')
  .option('--detach', 'start the run and return')
  .action(async (suite: string | undefined, options) => {
    if (!suite) {
      rollouts.help();
      return;
    }
    process.exitCode = await runRollouts(suite, options);
  });
rollouts
  .command('show <run> [task] [k]')
  .description("a run's episodes; with a task and k, that episode turn by turn")
  .action(async (run: string, task: string | undefined, k: string | undefined) => {
    process.exitCode = await showRollouts(run, task, k === undefined ? undefined : Number(k));
  });

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof InvalidInputError) {
    log(`entropo: ${err.message}`);
    process.exit(2);
  }
  log(`entropo: ${(err as Error).message ?? String(err)}`);
  process.exit(1);
});
