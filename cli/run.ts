import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Client, WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { entropoHome } from '../activities/paths';
import { rootMessage } from '../domain/failures';
import {
  type PipelineConfig,
  type PipelineConfigInput,
  pipelineConfigSchema,
} from '../domain/pipelineConfig';
import { formatPoolProgress, type RolloutPoolProgress } from '../domain/rolloutPool';
import type { RunReport } from '../domain/runReport';
import { InvalidInputError, problemsFromZod } from '../domain/schemaErrors';
import { isHeldOutSuite } from '../domain/taskSuite';
import type { PipelineProgress, PipelineResult } from '../workflows/pipeline';
import { readConfigDocument } from './runConfigFile';
import { startOrAttach, withSession } from './session';
import { resolveSuite } from './suites';

/** `entropo run <config>` (start or resume the pipeline) and `entropo report <run>`. */

export function pipelineWorkflowId(runId: string): string {
  return `run/${runId}`;
}

export interface RunOptions {
  runId?: string;
  detach?: boolean;
}

/**
 * The run config from a file, checked before anything starts (every bad field named, with the file). Suites
 * may be named (`quickstart`) or given as instance files; they become absolute paths, and the training
 * suite may not be a held-out one when the teacher reads gold patches.
 */
export function loadPipelineConfig(file: string, options: RunOptions = {}): PipelineConfig {
  const document = readConfigDocument(file) as PipelineConfigInput | null;
  const merged = { ...(document ?? {}) } as Record<string, unknown>;
  if (options.runId) merged.runId = options.runId;
  const parsed = pipelineConfigSchema.safeParse(merged);
  if (!parsed.success) throw new InvalidInputError('run config', problemsFromZod(parsed.error, { file }));
  const config = parsed.data;
  const problems: { file: string; field: string; message: string }[] = [];
  const suites = { ...config.suites };
  for (const split of ['train', 'test'] as const) {
    try {
      const suite = resolveSuite(config.suites[split]);
      suites[split] = path.resolve(suite.instancesFile);
      if (split === 'train' && config.teacher.kind === 'demonstrator' && isHeldOutSuite(suite.manifest))
        problems.push({
          file,
          field: 'suites.train',
          message: `${config.suites.train} is held out (a test split): the gold-patch demonstrator may only see a training split`,
        });
      if (split === 'test' && suite.manifest && !isHeldOutSuite(suite.manifest))
        problems.push({
          file,
          field: 'suites.test',
          message: `${config.suites.test} is not marked held out ("heldOut": true in its manifest, or made by \`entropo tasks split\`): TTS numbers on training tasks would not mean anything`,
        });
    } catch (e) {
      problems.push({
        file,
        field: `suites.${split}`,
        message: (e as Error).message.split('\n').slice(-1)[0]!,
      });
    }
  }
  if (problems.length > 0) throw new InvalidInputError('run config', problems);
  return { ...config, suites, runId: config.runId ?? defaultRunId() };
}

function defaultRunId(): string {
  return `run-${new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '').replace('T', '-')}`;
}

/** `sft ✓ 1m02s · pool ▶ · pairing · training · tts · report` */
export function formatPipelineProgress(p: PipelineProgress, detail?: string): string {
  const mark = { pending: '', running: ' ▶', done: ' ✓', reused: ' ↺', failed: ' ✗' } as const;
  const stages = p.stages
    .map((s) => `${s.stage}${mark[s.status]}${s.wallMs ? ` ${(s.wallMs / 1000).toFixed(0)}s` : ''}`)
    .join(' · ');
  return detail ? `${stages}  |  ${detail}` : stages;
}

/** The rollout pool a running stage is waiting on, by the ids the stages give their children. */
function poolWorkflowIds(p: PipelineProgress): string[] {
  const running = p.stages.find((s) => s.status === 'running');
  if (!running?.workflowId) return [];
  const id = running.workflowId;
  switch (running.stage) {
    case 'sft':
      return [`${id}/sft-teacher`];
    case 'pool':
      return [`${id}/pool-student`];
    case 'tts':
      return ['entropo', 'sft', 'base'].map((label) => `${id}/${label}/tts-${label}`);
    default:
      return [];
  }
}

export async function pipelineProgressLine(handle: WorkflowHandle, client: Client): Promise<string> {
  const progress = await handle.query<PipelineProgress>('progress');
  let detail: string | undefined;
  for (const id of poolWorkflowIds(progress)) {
    try {
      const pool = await client.workflow.getHandle(id).query<RolloutPoolProgress>('progress');
      if (pool.stage !== 'done') detail = formatPoolProgress(pool, 12);
    } catch {
      // not started, finished, or between runs
    }
  }
  return formatPipelineProgress(progress, detail);
}

export async function runPipeline(configFile: string, options: RunOptions): Promise<number> {
  const config = loadPipelineConfig(configFile, options);
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const runId = config.runId!;
  const external = !!process.env.TEMPORAL_ADDRESS;
  return withSession(
    { workerRoles: external ? [] : ['cpu', 'sandbox', 'llm', 'gpu'], log },
    async (session) => {
      const workflowId = pipelineWorkflowId(runId);
      const handle = await startOrAttach(
        session,
        { type: 'pipelineWorkflow', workflowId, config, runId, again: 'run it again' },
        log,
      );
      log(
        `run ${runId} · workflow ${workflowId}${session.uiUrl ? ` · ${session.uiUrl}/namespaces/${session.settings.namespace}/workflows/${encodeURIComponent(workflowId)}` : ''}`,
      );
      if (options.detach) return 0;
      const tty = process.stderr.isTTY;
      let last = '';
      const poll = setInterval(async () => {
        try {
          const line = await pipelineProgressLine(handle, session.client);
          if (line !== last) process.stderr.write(tty ? `\r\x1b[K${line}` : `${line}\n`);
          last = line;
        } catch {
          // not started yet
        }
      }, 2000);
      let result: PipelineResult;
      try {
        result = (await handle.result()) as PipelineResult;
      } catch (err) {
        if (!(err instanceof WorkflowFailedError)) throw err;
        if (tty && last) process.stderr.write('\n');
        last = '';
        process.stdout.write(
          `run ${runId} failed: ${rootMessage(err)}\nIts artifacts are kept: fix the cause and run the same command again to resume from that stage.\n`,
        );
        return 1;
      } finally {
        clearInterval(poll);
        if (tty && last) process.stderr.write('\n');
      }
      const out = (line: string) => process.stdout.write(`${line}\n`);
      for (const line of result.verdict) out(line);
      out(`report:      ${result.reportPath}`);
      out(`html:        ${result.htmlPath}`);
      out(`predictions: ${result.predictionsPath}`);
      if (session.uiUrl)
        out(
          `Temporal UI: ${session.uiUrl}/namespaces/${session.settings.namespace}/workflows/${encodeURIComponent(workflowId)}`,
        );
      return 0;
    },
  );
}

/** `entropo report <run>`: the summary of a finished run's report. */
export function printReport(runId: string): number {
  const file = path.join(entropoHome(), 'runs', runId, 'report.json');
  if (!fs.existsSync(file)) {
    throw new InvalidInputError('report', [
      {
        field: 'run',
        message: `run ${runId} has no report yet (looked for ${file}); \`entropo status ${runId}\` shows where it is`,
      },
    ]);
  }
  const report = JSON.parse(fs.readFileSync(file, 'utf8')) as RunReport;
  const out = (line: string) => process.stdout.write(`${line}\n`);
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  out(`${report.title} · ${report.model} · ${report.generatedAt}`);
  for (const line of report.verdict) out(`  ${line}`);
  out('');
  out('policy          tasks  N   selected  oracle  pass@k');
  for (const e of report.evaluations) {
    out(
      `${e.policy.padEnd(15)} ${String(e.tasks).padStart(5)} ${String(e.n).padStart(3)}   ${pct(e.selectedResolveRate).padStart(7)} ${pct(e.oracleBestOfN).padStart(7)}  ${e.passAtK.map((p) => `@${p.k} ${pct(p.value)}`).join(' ')}`,
    );
  }
  if (report.pairing) {
    const p = report.pairing;
    out(
      `pairs: ${p.pairs} from ${p.tasksCovered}/${p.tasks} tasks · without a resolved episode: ${p.tasksWithoutResolved.length} · without an unresolved one: ${p.tasksWithoutUnresolved.length}`,
    );
  }
  out('stage       status   wall      tokens');
  for (const s of report.stages)
    out(
      `${s.stage.padEnd(11)} ${s.status.padEnd(8)} ${s.wallMs === null ? '—' : `${(s.wallMs / 1000).toFixed(0)} s`.padStart(6)}  ${s.tokens ?? '—'}`,
    );
  for (const t of report.training) out(`adapter (${t.mode}): ${t.adapterPath}`);
  const dir = path.dirname(file);
  out(`report: ${path.join(dir, 'report.md')}`);
  out(`html:   ${path.join(dir, 'report.html')}`);
  out(`predictions: ${report.predictionsPath}`);
  return 0;
}
