import { ApplicationFailure, Context } from '@temporalio/activity';
import {
  type ApplyAttempt,
  describeFailingTests,
  type GradeReport,
  type GradeSummary,
  PATCH_APPLY_METHODS,
  type PatchChoice,
  REVERSE_APPLY_CHECK,
  type RevertedFile,
  summaryOf,
  whyPatchDidNotApply,
} from '../domain/grading';
import { filesInPatch, type TaskInstance } from '../domain/instance';
import type { TestCommandRun } from '../domain/regression';
import { decideResolution } from '../domain/resolution';
import { parseTestLog } from '../domain/testLog';
import {
  changedByPatch,
  filesNamedInPatch,
  findRunnerHooks,
  isTestMachineryPath,
  type RunnerHookFlag,
} from '../domain/testMachinery';
import type { ArtifactStore } from './artifacts';
import { withHeartbeat } from './heartbeat';
import type { Sandbox } from './sandboxBackend';
import type { SandboxPool } from './sandboxPool';

export interface GradeRequest {
  sandboxId: string;
  instanceId: string;
  /** Artifact id of the instance JSON. */
  instanceRef: string;
  patch: PatchChoice;
  testTimeoutSec: number;
  commandTimeoutSec: number;
  outputLimitBytes: number;
}

/** Test logs are parsed for per-test statuses, so keep far more of them than of an agent's command output. */
const TEST_LOG_LIMIT_BYTES = 32 * 1024 * 1024;

/**
 * Grades a patch in a fresh sandbox, SWE-bench style: apply the patch (strictest method first, never in
 * reverse), put the test machinery it changed back as at the base commit (domain/testMachinery.ts), restore
 * the files the test patch touches and apply the test patch over them, run the tests, parse per-test
 * statuses and decide resolution. A patch that does not apply or tests that hang are graded unresolved with
 * the reason; they are not errors.
 */
export async function gradeInSandbox(
  deps: { store: ArtifactStore; sandboxes: SandboxPool },
  request: GradeRequest,
): Promise<GradeSummary> {
  const started = performance.now();
  const instance = await deps.store.getJson<TaskInstance>(request.instanceRef);
  if (!instance.test_command) {
    throw ApplicationFailure.nonRetryable(
      `instance ${instance.instance_id} has no test_command; the local sandbox needs one to run its tests`,
      'InvalidInstance',
    );
  }
  const sandbox = deps.sandboxes.get(request.sandboxId);
  const signal = Context.current().cancellationSignal;
  const execOptions = {
    timeoutSec: request.commandTimeoutSec,
    outputLimitBytes: request.outputLimitBytes,
    signal,
  };
  const report: GradeReport = {
    instanceId: instance.instance_id,
    patch: request.patch.kind,
    resolved: false,
    appliedWith: null,
    durationMs: 0,
    applyAttempts: [],
    revertedFiles: [],
    runnerHooks: [],
    testPatchApplied: false,
    testCommand: instance.test_command,
    testExitCode: null,
    testTimedOut: false,
    testLogId: null,
    statuses: {},
    resolution: null,
    durations: { setupMs: 0, applyMs: 0, testMs: 0 },
  };

  return withHeartbeat({ instanceId: instance.instance_id, patch: request.patch.kind }, async () => {
    const patchText = await patchFor(deps.store, instance, request.patch);
    const applyStarted = performance.now();
    report.durations.setupMs = Math.round(applyStarted - started);
    if (patchText.trim() !== '') {
      Object.assign(report, await applyModelPatch(sandbox, instance.base_commit, patchText, execOptions));
    }

    if (report.reason === undefined) {
      await resetTestFiles(sandbox, instance, execOptions);
      if (instance.test_patch.trim() !== '') {
        const testPatch = await sandbox.writeTmpFile('test.patch', instance.test_patch);
        const result = await sandbox.exec(`git apply --verbose ${testPatch}`, execOptions);
        report.applyAttempts.push(attemptOf('test patch', result));
        report.testPatchApplied = result.exitCode === 0;
        if (!report.testPatchApplied) report.reason = 'test patch did not apply';
      } else {
        report.testPatchApplied = true;
      }
    }
    const testStarted = performance.now();
    report.durations.applyMs = Math.round(testStarted - applyStarted);

    if (report.reason === undefined) {
      const run = await runRepoTests(deps.store, sandbox, instance, {
        timeoutSec: request.testTimeoutSec,
        signal,
      });
      report.durations.testMs = Math.round(performance.now() - testStarted);
      report.testExitCode = run.exitCode;
      report.testTimedOut = run.timedOut;
      report.testLogId = run.logId;
      if (run.timedOut) {
        report.reason = `tests timed out after ${request.testTimeoutSec}s`;
      } else {
        report.statuses = run.statuses;
        report.resolution = decideResolution(instance.FAIL_TO_PASS, instance.PASS_TO_PASS, report.statuses);
        report.resolved = report.resolution.resolved;
        if (!report.resolved) report.reason = describeFailingTests(report.resolution);
      }
    }
    report.durationMs = Math.round(performance.now() - started);
    const { id: reportId } = await deps.store.putJson(report);
    return summaryOf(report, reportId, deps.store.pathOf(reportId));
  });
}

/** Runs the instance's own test command in the sandbox, stores its log and parses per-test statuses. */
export async function runRepoTests(
  store: ArtifactStore,
  sandbox: Sandbox,
  instance: Pick<TaskInstance, 'test_command' | 'log_parser'>,
  options: { timeoutSec: number; signal?: AbortSignal },
): Promise<TestCommandRun> {
  const result = await sandbox.exec(instance.test_command!, {
    ...options,
    outputLimitBytes: TEST_LOG_LIMIT_BYTES,
  });
  const log = `${result.stdout}\n${result.stderr}`;
  return {
    exitCode: result.exitCode,
    timedOut: result.timedOut,
    logId: (await store.put(log)).id,
    statuses: result.timedOut ? {} : parseTestLog(instance.log_parser, log),
    durationMs: result.durationMs,
  };
}

/** What applying a model patch did, for a report. */
export interface PatchApplication {
  /** The method that applied it, or null when none did. */
  appliedWith: string | null;
  applyAttempts: ApplyAttempt[];
  /** Test machinery the patch changed, put back as at the base commit. */
  revertedFiles: RevertedFile[];
  /** Added lines outside the test machinery that reach into the test runner (flagged, not reverted). */
  runnerHooks: RunnerHookFlag[];
  /** Why the patch did not apply (also when only in reverse or in part); absent when it applied. */
  reason?: string;
}

/**
 * Applies a model patch to the sandbox's repository (strictest method first, never in reverse, a partial
 * apply undone) and puts the test machinery it changed back as at the base commit, so the repository's own
 * tests run as the base commit has them. A patch that does not apply is reported with the reason, not thrown.
 */
export async function applyModelPatch(
  sandbox: Sandbox,
  baseCommit: string,
  patchText: string,
  execOptions: { timeoutSec: number; outputLimitBytes: number; signal?: AbortSignal },
): Promise<PatchApplication> {
  const applied: PatchApplication = {
    appliedWith: null,
    applyAttempts: [],
    revertedFiles: [],
    runnerHooks: [],
  };
  const untrackedBefore = await untrackedFiles(sandbox, execOptions);
  const file = await sandbox.writeTmpFile('model.patch', patchText);
  for (const method of PATCH_APPLY_METHODS) {
    const result = await sandbox.exec(method.command(file), execOptions);
    applied.applyAttempts.push(attemptOf(method.name, result));
    if (result.exitCode === 0) {
      applied.appliedWith = method.name;
      break;
    }
    await sandbox.exec(UNDO_CHANGES, execOptions); // undo partial applies
  }
  if (applied.appliedWith === null) {
    const reverse = await sandbox.exec(REVERSE_APPLY_CHECK(file), execOptions);
    applied.reason = whyPatchDidNotApply(applied.applyAttempts, reverse.exitCode === 0);
    return applied;
  }
  const changed = changedByPatch(
    await trackedChanges(sandbox, baseCommit, execOptions),
    untrackedBefore,
    await untrackedFiles(sandbox, execOptions),
    filesNamedInPatch(patchText),
  );
  applied.revertedFiles = await revertToBase(
    sandbox,
    baseCommit,
    changed.filter(isTestMachineryPath),
    execOptions,
  );
  applied.runnerHooks = findRunnerHooks(patchText);
  return applied;
}

/** Puts the working tree back as the last commit has it (files git ignores are kept). */
export const UNDO_CHANGES = 'git reset --hard --quiet && git clean -fdq';

/** Lists of paths can be long (a repository's ignored build files): keep them whole. */
const LIST_LIMIT_BYTES = 32 * 1024 * 1024;

async function listPaths(
  sandbox: Sandbox,
  command: string,
  options: { timeoutSec: number; outputLimitBytes: number },
): Promise<string[]> {
  const result = await sandbox.exec(command, { ...options, outputLimitBytes: LIST_LIMIT_BYTES });
  if (result.exitCode !== 0 || result.stdoutCutBytes > 0) {
    throw new Error(
      `\`${command}\` in the sandbox failed (exit ${result.exitCode}): ${result.stderr.slice(0, 500)}`,
    );
  }
  return result.stdout.split('\0').filter((p) => p !== '');
}

/** Files git does not track, ignored ones included (a patch may add a file that `.gitignore` hides). */
function untrackedFiles(sandbox: Sandbox, options: { timeoutSec: number; outputLimitBytes: number }) {
  return listPaths(sandbox, 'git ls-files -z --others', options);
}

/** Tracked files whose content differs from the base commit (deleted ones included). */
function trackedChanges(
  sandbox: Sandbox,
  baseCommit: string,
  options: { timeoutSec: number; outputLimitBytes: number },
) {
  return listPaths(sandbox, `git diff -z --name-only --no-renames ${baseCommit} --`, options);
}

/** Puts files back as at the base commit: restored when the base has them, removed when the patch added them. */
async function revertToBase(
  sandbox: Sandbox,
  baseCommit: string,
  files: readonly string[],
  options: { timeoutSec: number; outputLimitBytes: number },
): Promise<RevertedFile[]> {
  if (files.length === 0) return [];
  const script =
    `while IFS= read -r -d '' f; do ` +
    `if git cat-file -e "${baseCommit}:$f" 2>/dev/null; then ` +
    `git checkout -q ${baseCommit} -- ":(literal)$f" && printf 'restored\\t%s\\0' "$f"; ` +
    `else rm -f -- "$f" && printf 'removed\\t%s\\0' "$f"; fi; done`;
  const result = await sandbox.exec(script, {
    ...options,
    outputLimitBytes: LIST_LIMIT_BYTES,
    stdin: `${files.join('\0')}\0`,
  });
  const reverted = result.stdout
    .split('\0')
    .filter((entry) => entry !== '')
    .map((entry) => {
      const tab = entry.indexOf('\t');
      return { action: entry.slice(0, tab) as RevertedFile['action'], path: entry.slice(tab + 1) };
    });
  if (result.exitCode !== 0 || reverted.length !== files.length) {
    throw new Error(
      `could not put the test machinery back as at ${baseCommit} (exit ${result.exitCode}, ${reverted.length} of ${files.length} files): ${result.stderr.slice(0, 500)}`,
    );
  }
  return reverted;
}

async function patchFor(store: ArtifactStore, instance: TaskInstance, choice: PatchChoice): Promise<string> {
  switch (choice.kind) {
    case 'gold':
      return instance.patch;
    case 'empty':
      return '';
    case 'model':
      return store.getText(choice.patchId);
  }
}

function attemptOf(
  method: string,
  result: { exitCode: number | null; stdout: string; stderr: string },
): ApplyAttempt {
  return { method, exitCode: result.exitCode, output: `${result.stdout}${result.stderr}`.slice(0, 4000) };
}

/**
 * The test patch is applied over whatever the model did to the files it touches: those files go back to
 * the base commit first (and files the test patch creates are removed).
 */
async function resetTestFiles(
  sandbox: Sandbox,
  instance: TaskInstance,
  options: { timeoutSec: number; outputLimitBytes: number },
): Promise<void> {
  await revertToBase(sandbox, instance.base_commit, filesInPatch(instance.test_patch), options);
}
