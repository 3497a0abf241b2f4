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
import { decideResolution } from '../domain/resolution';
import { parseTestLog } from '../domain/testLog';
import {
  changedByPatch,
  filesNamedInPatch,
  findRunnerHooks,
  isTestMachineryPath,
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
      const untrackedBefore = await untrackedFiles(sandbox, execOptions);
      const file = await sandbox.writeTmpFile('model.patch', patchText);
      for (const method of PATCH_APPLY_METHODS) {
        const result = await sandbox.exec(method.command(file), execOptions);
        report.applyAttempts.push(attemptOf(method.name, result));
        if (result.exitCode === 0) {
          report.appliedWith = method.name;
          break;
        }
        await sandbox.exec('git reset --hard --quiet && git clean -fdq', execOptions); // undo partial applies
      }
      if (report.appliedWith === null) {
        const reverse = await sandbox.exec(REVERSE_APPLY_CHECK(file), execOptions);
        report.reason = whyPatchDidNotApply(report.applyAttempts, reverse.exitCode === 0);
      } else {
        const changed = changedByPatch(
          await trackedChanges(sandbox, instance.base_commit, execOptions),
          untrackedBefore,
          await untrackedFiles(sandbox, execOptions),
          filesNamedInPatch(patchText),
        );
        report.revertedFiles = await revertToBase(
          sandbox,
          instance.base_commit,
          changed.filter(isTestMachineryPath),
          execOptions,
        );
        report.runnerHooks = findRunnerHooks(patchText);
      }
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
      const result = await sandbox.exec(instance.test_command!, {
        ...execOptions,
        timeoutSec: request.testTimeoutSec,
        outputLimitBytes: TEST_LOG_LIMIT_BYTES,
      });
      report.durations.testMs = Math.round(performance.now() - testStarted);
      report.testExitCode = result.exitCode;
      report.testTimedOut = result.timedOut;
      const log = `${result.stdout}\n${result.stderr}`;
      report.testLogId = (await deps.store.put(log)).id;
      if (result.timedOut) {
        report.reason = `tests timed out after ${request.testTimeoutSec}s`;
      } else {
        report.statuses = parseTestLog(instance.log_parser, log);
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
