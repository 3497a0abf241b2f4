import * as fs from 'node:fs';
import * as path from 'node:path';
import { ArtifactStore } from '../activities/artifacts';
import { entropoHome } from '../activities/paths';
import { failingTestsOf, type GradeReport } from '../domain/grading';
import { InvalidInputError } from '../domain/schemaErrors';
import type { TestStatus } from '../domain/testLog';
import type { InstanceVerdict } from '../domain/validation';

/**
 * `entropo grading show`: one grading's report, from its report id, its report file, or a validate run's
 * id with an instance id and the patch (gold or empty; gold by default).
 */
export async function runGradingShow(
  reference: string,
  instanceId: string | undefined,
  patch: string | undefined,
  out: (line: string) => void,
): Promise<number> {
  const store = new ArtifactStore();
  const { report, reportId } = await findReport(store, reference, instanceId, patch);
  const testLogPath = report.testLogId ? store.pathOf(report.testLogId) : null;
  for (const line of formatGradeReport(report, {
    reportId,
    reportPath: store.pathOf(reportId),
    testLogPath,
  })) {
    out(line);
  }
  return 0;
}

async function findReport(
  store: ArtifactStore,
  reference: string,
  instanceId: string | undefined,
  patch: string | undefined,
): Promise<{ report: GradeReport; reportId: string }> {
  if (/^sha256:/.test(reference)) {
    if (!(await store.has(reference))) {
      throw new InvalidInputError('report id', [
        { field: 'report', message: `no artifact ${reference} in ${store.root}` },
      ]);
    }
    return { report: await store.getJson<GradeReport>(reference), reportId: reference };
  }
  if (instanceId === undefined && fs.existsSync(reference) && fs.statSync(reference).isFile()) {
    // A report's file path (the `reportPath` of a grading result): artifacts are named by their hash.
    const reportId = `sha256:${path.basename(reference)}`;
    return { report: JSON.parse(fs.readFileSync(reference, 'utf8')) as GradeReport, reportId };
  }
  const file = path.join(entropoHome(), 'runs', reference, 'validation.json');
  if (!fs.existsSync(file)) {
    throw new InvalidInputError('grading', [
      {
        field: 'run',
        message: `"${reference}" is neither a report id (sha256:…), a report file, nor a finished validate run (no ${file})`,
      },
    ]);
  }
  const { verdicts } = JSON.parse(fs.readFileSync(file, 'utf8')) as { verdicts: InstanceVerdict[] };
  const ids = verdicts.map((v) => v.instanceId);
  if (instanceId === undefined) {
    throw new InvalidInputError('grading', [
      { field: 'instance', message: `name an instance of run ${reference}: ${ids.join(', ')}` },
    ]);
  }
  const verdict = verdicts.find((v) => v.instanceId === instanceId);
  if (!verdict) {
    throw new InvalidInputError('grading', [
      {
        field: 'instance',
        message: `run ${reference} has no instance ${instanceId} (it has ${ids.join(', ')})`,
      },
    ]);
  }
  const which = patch ?? 'gold';
  if (which !== 'gold' && which !== 'empty') {
    throw new InvalidInputError('grading', [
      { field: 'patch', message: `unknown patch "${which}" (expected gold or empty)` },
    ]);
  }
  const grading = verdict[which];
  if ('error' in grading) {
    throw new InvalidInputError('grading', [
      {
        field: 'patch',
        message: `the ${which} grading of ${instanceId} has no report: it failed (${grading.error})`,
      },
    ]);
  }
  return { report: await store.getJson<GradeReport>(grading.reportId), reportId: grading.reportId };
}

const MAX_TESTS_SHOWN = 20;

/** The lines `entropo grading show` prints for a report. */
export function formatGradeReport(
  report: GradeReport,
  where: { reportId: string; reportPath: string; testLogPath: string | null },
): string[] {
  const verdict = report.resolved ? 'resolved' : `unresolved: ${report.reason ?? 'no reason recorded'}`;
  const lines = [
    `${report.instanceId} · ${report.patch} patch · ${verdict}`,
    `report: ${where.reportPath} (${where.reportId})`,
    `applied with: ${report.appliedWith ?? (report.patch === 'empty' ? '(empty patch)' : 'nothing applied it')}`,
  ];
  if (report.applyAttempts.length > 0) {
    lines.push('apply log:');
    for (const attempt of report.applyAttempts) {
      lines.push(`  ${attempt.method}: exit ${attempt.exitCode ?? 'none (killed)'}`);
      for (const line of attempt.output.trimEnd().split('\n')) if (line) lines.push(`    ${line}`);
    }
  }
  // Reports from before test machinery was reverted have neither list.
  const reverted = report.revertedFiles ?? [];
  const hooks = report.runnerHooks ?? [];
  lines.push(
    reverted.length === 0
      ? 'test machinery reverted: none'
      : `test machinery reverted (${reverted.length}): ${reverted.map((f) => `${f.path} (${f.action})`).join(', ')}`,
  );
  if (hooks.length === 0) lines.push('runner hooks flagged: none');
  else {
    lines.push(`runner hooks flagged (${hooks.length}):`);
    for (const hook of hooks) lines.push(`  ${hook.file}:${hook.line} ${hook.rule}: ${hook.text}`);
  }
  if (report.testExitCode !== null || report.testTimedOut) {
    lines.push(
      `tests: ${report.testCommand} → ${report.testTimedOut ? 'timed out' : `exit ${report.testExitCode}`} in ${(report.durations.testMs / 1000).toFixed(1)}s`,
    );
  } else {
    lines.push('tests: not run');
  }
  const counts = new Map<TestStatus, number>();
  for (const status of Object.values(report.statuses)) counts.set(status, (counts.get(status) ?? 0) + 1);
  if (counts.size > 0) {
    lines.push(`statuses: ${[...counts].map(([status, n]) => `${n} ${status}`).join(', ')}`);
  }
  if (report.resolution) {
    for (const list of ['FAIL_TO_PASS', 'PASS_TO_PASS'] as const) {
      const outcome = report.resolution[list];
      const total = outcome.success.length + outcome.failure.length;
      lines.push(`${list}: ${outcome.success.length} of ${total} pass`);
    }
    const failing = failingTestsOf(report.resolution);
    for (const test of failing.slice(0, MAX_TESTS_SHOWN)) {
      lines.push(`  ${test.status.padEnd(7)} ${test.list} ${test.test}`);
    }
    if (failing.length > MAX_TESTS_SHOWN) lines.push(`  … and ${failing.length - MAX_TESTS_SHOWN} more`);
  }
  lines.push(`test log: ${where.testLogPath ?? 'none'}`);
  return lines;
}
