/**
 * What a finished pipeline run cost, from its workflow histories (`npm run bench:pipeline -- <run id>`,
 * against the embedded server, or TEMPORAL_ADDRESS):
 *   - wall time and tokens per stage (from the run's `report.json`) and the run's total;
 *   - orchestration overhead: the share of the run's wall time in which no activity of any of its
 *     workflows was executing (union of ActivityTaskStarted → closed intervals over every workflow whose id
 *     starts with `run/<id>`) — time spent in workflow tasks, scheduling and child starts;
 *   - history per stage: workflows, events and bytes (encoded protobuf, as the server stores it).
 * Prints Markdown for BENCHMARKS.md.
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { entropoHome } from '../activities/paths';
import type { RunReport } from '../domain/runReport';

type Event = temporal.api.history.v1.IHistoryEvent;
const EventType = temporal.api.enums.v1.EventType;

function millis(event: Event): number {
  const t = event.eventTime!;
  return Number(t.seconds ?? 0) * 1000 + Math.floor((t.nanos ?? 0) / 1e6);
}

/** [start, end] of every activity attempt that ran in a history. */
function activityIntervals(events: Event[]): [number, number][] {
  const started = new Map<number, number>();
  const out: [number, number][] = [];
  for (const e of events) {
    if (e.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED) started.set(Number(e.eventId), millis(e));
    const closed =
      e.activityTaskCompletedEventAttributes ??
      e.activityTaskFailedEventAttributes ??
      e.activityTaskTimedOutEventAttributes ??
      e.activityTaskCanceledEventAttributes;
    if (closed?.startedEventId) {
      const start = started.get(Number(closed.startedEventId));
      if (start !== undefined) out.push([start, millis(e)]);
    }
  }
  return out;
}

function unionLength(intervals: [number, number][]): number {
  const sorted = [...intervals].sort((a, b) => a[0] - b[0]);
  let total = 0;
  let end = -Infinity;
  let start = -Infinity;
  for (const [s, e] of sorted) {
    if (s > end) {
      if (end > start) total += end - start;
      start = s;
      end = e;
    } else end = Math.max(end, e);
  }
  if (end > start) total += end - start;
  return total;
}

async function main() {
  const runId = process.argv[2];
  if (!runId) throw new Error('usage: npm run bench:pipeline -- <run id>');
  const address = process.env.TEMPORAL_ADDRESS ?? `127.0.0.1:${process.env.ENTROPO_TEMPORAL_PORT ?? 7233}`;
  const connection = await Connection.connect({ address });
  const client = new Client({ connection, namespace: process.env.TEMPORAL_NAMESPACE ?? 'default' });
  const root = `run/${runId}`;
  // The report keeps each stage's time (no worker needs to be running to read it).
  const report = JSON.parse(
    fs.readFileSync(path.join(entropoHome(), 'runs', runId, 'report.json'), 'utf8'),
  ) as RunReport;

  const perStage = new Map<string, { workflows: number; events: number; bytes: number }>();
  const intervals: [number, number][] = [];
  let first = Infinity;
  let last = -Infinity;
  for await (const wf of client.workflow.list({ query: `WorkflowType != ''` })) {
    if (wf.workflowId !== root && !wf.workflowId.startsWith(`${root}/`)) continue;
    const history = await client.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory();
    const events = history.events ?? [];
    const bytes = temporal.api.history.v1.History.encode(history).finish().length;
    const stage =
      wf.workflowId === root ? 'pipeline' : wf.workflowId.slice(root.length + 1).split(/[-/]/)[0]!;
    const s = perStage.get(stage) ?? { workflows: 0, events: 0, bytes: 0 };
    s.workflows++;
    s.events += events.length;
    s.bytes += bytes;
    perStage.set(stage, s);
    intervals.push(...activityIntervals(events));
    if (wf.workflowId === root && events.length > 0) {
      first = millis(events[0]!);
      last = millis(events[events.length - 1]!);
    }
  }
  const wall = last - first;
  const busy = unionLength(intervals.map(([s, e]) => [Math.max(s, first), Math.min(e, last)]));
  const out = (line = '') => process.stdout.write(`${line}\n`);
  out(`Run \`${runId}\`: ${(wall / 60000).toFixed(1)} min from start to report.`);
  out();
  out('| stage | wall | tokens | workflows | history events | history bytes |');
  out('| --- | ---: | ---: | ---: | ---: | ---: |');
  for (const st of report.stages) {
    const h = perStage.get(st.stage) ?? { workflows: 0, events: 0, bytes: 0 };
    out(
      `| ${st.stage} | ${st.wallMs === null ? '—' : `${(st.wallMs / 1000).toFixed(0)} s`} | ${(st.tokens ?? 0).toLocaleString('en-US')} | ${h.workflows} | ${h.events} | ${h.bytes.toLocaleString('en-US')} |`,
    );
  }
  const p = perStage.get('pipeline');
  if (p) out(`| (pipeline workflow itself) | | | 1 | ${p.events} | ${p.bytes.toLocaleString('en-US')} |`);
  out();
  out(
    `Orchestration overhead: ${((wall - busy) / 1000).toFixed(0)} s of ${(wall / 1000).toFixed(0)} s with no activity running = **${(((wall - busy) / wall) * 100).toFixed(1)}%** of the run.`,
  );
  await connection.close();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
