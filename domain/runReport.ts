/**
 * A pipeline run's report (DESIGN.md §8): the data the coordinator gathers, and pure renderers for it.
 *
 * The report is first laid out as a list of blocks (headings, paragraphs, lists, tables, code, charts); the
 * Markdown and the HTML are two renderings of the same blocks, so they cannot say different things. Text is
 * kept as spans (plain, code, strong) rather than as Markdown source, because task ids and paths are not
 * Markdown: `astropy__astropy-12907` must not turn bold, and a `|` must not end a table cell.
 *
 * Charts are Vega-Lite specs built here; turning them into SVG is I/O (activities/reportRender.ts).
 */

import type { Selection } from './selector';

export interface StageReport {
  stage: string;
  status: 'done' | 'skipped' | 'failed' | 'pending';
  wallMs: number | null;
  activityMs?: number | null;
  tokens?: number | null;
  artifacts: Record<string, string>;
  note?: string;
}

export interface TrainingCurvePoint {
  step: number;
  loss: number;
  rewardAccuracy?: number;
  margin?: number;
  entropy?: number;
}

export interface PolicyEvaluation {
  /** e.g. 'entropo-dpo', 'sft', 'base' */
  policy: string;
  tasks: number;
  /** Rollouts per task. */
  n: number;
  /** pass@1 of the patch the selector picked. */
  selectedResolveRate: number;
  passAtK: { k: number; value: number }[];
  oracleBestOfN: number;
  ttsCurve: { n: number; resolveRate: number }[];
  diversity: {
    distinctPatches: number;
    meanPatchesPerTask: number;
    actionDistance: number;
    meanTokenEntropy: number | null;
  };
  perTask: {
    taskId: string;
    resolved: number;
    rollouts: number;
    selected: string | null;
    selectedResolved: boolean | null;
    /** What the hybrid selector kept after each filter (domain/selector.ts). */
    survivors: Selection['survivors'];
  }[];
}

export interface RunReport {
  runId: string;
  title: string;
  /** Base model name. */
  model: string;
  /** ISO time. */
  generatedAt: string;
  stages: StageReport[];
  pairing: {
    pairs: number;
    tasks: number;
    tasksCovered: number;
    tasksWithoutResolved: string[];
    tasksWithoutUnresolved: string[];
    resolvedExamples: number;
    unresolvedExamples: number;
  } | null;
  training: {
    stage: string;
    mode: string;
    steps: number;
    curve: TrainingCurvePoint[];
    adapterPath: string;
    /** The same adapter in the artifact store (a directory manifest), which outlives the worker's disk. */
    adapterId: string | null;
    serve: string;
    merge: string;
  }[];
  /** The first is the trained policy. */
  evaluations: PolicyEvaluation[];
  predictionsPath: string;
  provenance: {
    commit: string;
    packages: Record<string, string>;
    configHash: string;
    seeds: Record<string, number>;
  };
  /** Plain-language verdict lines, e.g. "SmolLM2-135M resolved 0 of 4 test tasks: ..." */
  verdict: string[];
}

/** File names (relative to the report) of the rendered charts; a chart left out is not drawn. */
export interface ChartFiles {
  ttsSvgFile?: string;
  trainingSvgFile?: string;
}

// ---------------------------------------------------------------------------------------------------------
// Numbers in words

const MISSING = '—';

/** A rate in 0..1 as a percentage: `25%`, `33.3%`, `0%`. */
export function formatPercent(rate: number | null | undefined): string {
  if (rate === null || rate === undefined || !Number.isFinite(rate)) return MISSING;
  const fixed = (rate * 100).toFixed(1);
  return `${fixed.endsWith('.0') ? fixed.slice(0, -2) : fixed}%`;
}

/** Milliseconds as a person reads them: `450 ms`, `12.3 s`, `3 m 05 s`, `2 h 04 m`. */
export function formatDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms) || ms < 0) return MISSING;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const seconds = Math.round(ms / 1000);
  if (seconds < 3600) return `${Math.floor(seconds / 60)} m ${String(seconds % 60).padStart(2, '0')} s`;
  const minutes = Math.round(seconds / 60);
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, '0')} m`;
}

/** An integer with thousands separators, independent of the machine's locale: `1,234,567`. */
export function formatCount(count: number | null | undefined): string {
  if (count === null || count === undefined || !Number.isFinite(count)) return MISSING;
  return Math.round(count)
    .toString()
    .replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

function formatNumber(value: number | null | undefined, digits = 3): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return MISSING;
  return value.toFixed(digits);
}

/** How many tasks the selected patch resolved: counted per task when the report has them, else from the rate. */
export function selectedResolvedCount(evaluation: PolicyEvaluation): number {
  if (evaluation.perTask.length === evaluation.tasks) {
    return evaluation.perTask.filter((t) => t.selectedResolved === true).length;
  }
  return Math.round(evaluation.selectedResolveRate * evaluation.tasks);
}

/** How many tasks at least one rollout resolved (what oracle best-of-N counts). */
function oracleResolvedCount(evaluation: PolicyEvaluation): number {
  if (evaluation.perTask.length === evaluation.tasks) {
    return evaluation.perTask.filter((t) => t.resolved > 0).length;
  }
  return Math.round(evaluation.oracleBestOfN * evaluation.tasks);
}

/** One plain sentence per policy: how many tasks it resolved, said plainly when it is none. */
export function outcomeSentence(evaluation: PolicyEvaluation, subject: string = evaluation.policy): string {
  const selected = selectedResolvedCount(evaluation);
  const oracle = oracleResolvedCount(evaluation);
  const head = `${subject}: the selected patch resolved ${selected} of ${evaluation.tasks} tasks (${formatPercent(evaluation.selectedResolveRate)})`;
  if (oracle === 0) {
    return `${head}; none of its ${evaluation.n} rollouts per task resolved any task.`;
  }
  return `${head}; at least one of ${evaluation.n} rollouts resolved ${oracle} of ${evaluation.tasks} (oracle best-of-${evaluation.n}: ${formatPercent(evaluation.oracleBestOfN)}).`;
}

// ---------------------------------------------------------------------------------------------------------
// Blocks

export type Span = { text: string; style?: 'code' | 'strong' } | { br: true };
export type Inline = Span[];

export type Block =
  | { kind: 'heading'; level: 1 | 2 | 3; text: Inline }
  | { kind: 'paragraph'; text: Inline }
  | { kind: 'list'; items: Inline[] }
  | { kind: 'table'; header: string[]; rows: Inline[][]; numeric?: boolean[] }
  | { kind: 'code'; text: string }
  | { kind: 'chart'; alt: string; file: string; chart: 'tts' | 'training' };

const t = (text: string): Span => ({ text });
const code = (text: string): Span => ({ text, style: 'code' });
const strong = (text: string): Span => ({ text, style: 'strong' });
const br: Span = { br: true };
const para = (...text: Inline): Block => ({ kind: 'paragraph', text });
const heading = (level: 1 | 2 | 3, text: string): Block => ({ kind: 'heading', level, text: [t(text)] });
/** A list of ids or paths in a cell or a sentence: `a`, `b`, `c`. */
const codeList = (items: readonly string[]): Inline =>
  items.flatMap((item, i) => (i === 0 ? [code(item)] : [t(', '), code(item)]));

/** The report laid out, in reading order: verdict first, the details an engineer digs into after it. */
export function reportBlocks(report: RunReport, charts: ChartFiles = {}): Block[] {
  const blocks: Block[] = [
    heading(1, report.title),
    para(
      t('Run '),
      code(report.runId),
      t(' · base model '),
      code(report.model),
      t(` · generated ${report.generatedAt}`),
    ),
    heading(2, 'Verdict'),
    {
      kind: 'list',
      items: (report.verdict.length > 0
        ? report.verdict
        : report.evaluations.map((e) => outcomeSentence(e, `${e.policy} on ${report.model}`))
      ).map((line) => [strong(line)]),
    },
    ...resultBlocks(report, charts),
    ...diversityBlocks(report),
    ...pairingBlocks(report),
    ...trainingBlocks(report, charts),
    ...stageBlocks(report),
    ...perTaskBlocks(report),
    heading(2, 'Predictions'),
    para(
      t('SWE-bench predictions file ('),
      code('instance_id, model_name_or_path, model_patch'),
      t(', one JSON object per line): '),
      code(report.predictionsPath),
    ),
    ...provenanceBlocks(report),
  ];
  return blocks;
}

function resultBlocks(report: RunReport, charts: ChartFiles): Block[] {
  const blocks: Block[] = [heading(2, 'Results')];
  if (report.evaluations.length === 0) return [...blocks, para(t('No policy was evaluated in this run.'))];
  blocks.push({ kind: 'list', items: report.evaluations.map((e) => [t(outcomeSentence(e))]) });
  const ks = [...new Set(report.evaluations.flatMap((e) => e.passAtK.map((p) => p.k)))].sort((a, b) => a - b);
  blocks.push({
    kind: 'table',
    header: ['Policy', 'Tasks', 'N', 'Selected (pass@1)', ...ks.map((k) => `pass@${k}`), 'Oracle best-of-N'],
    numeric: [false, true, true, true, ...ks.map(() => true), true],
    rows: report.evaluations.map((e) => [
      [code(e.policy)],
      [t(String(e.tasks))],
      [t(String(e.n))],
      [t(`${formatPercent(e.selectedResolveRate)} (${selectedResolvedCount(e)}/${e.tasks})`)],
      ...ks.map((k) => [t(formatPercent(e.passAtK.find((p) => p.k === k)?.value))]),
      [t(formatPercent(e.oracleBestOfN))],
    ]),
  });
  blocks.push(
    para(
      strong('Selected'),
      t(': the hybrid selector’s one patch per task, graded. '),
      strong('pass@k'),
      t(': unbiased estimate from the N rollouts per task. '),
      strong('Oracle best-of-N'),
      t(': a task counts when any of its N rollouts resolves it (an upper bound for any selector).'),
    ),
  );

  blocks.push(heading(3, 'Test-time scaling'));
  if (charts.ttsSvgFile) {
    blocks.push({
      kind: 'chart',
      alt: 'Resolve rate against the number of rollouts N, per policy',
      file: charts.ttsSvgFile,
      chart: 'tts',
    });
  }
  const ns = [...new Set(report.evaluations.flatMap((e) => e.ttsCurve.map((p) => p.n)))].sort(
    (a, b) => a - b,
  );
  if (ns.length === 0) {
    blocks.push(para(t('No test-time scaling curve was measured.')));
  } else {
    blocks.push(
      para(
        t(
          'Resolve rate of the selected patch when the selector sees only N of the rollouts (solid in the chart; pass@k dashed):',
        ),
      ),
      {
        kind: 'table',
        header: ['N', ...report.evaluations.map((e) => e.policy)],
        numeric: [true, ...report.evaluations.map(() => true)],
        rows: ns.map((n) => [
          [t(String(n))],
          ...report.evaluations.map((e) => [
            t(formatPercent(e.ttsCurve.find((p) => p.n === n)?.resolveRate)),
          ]),
        ]),
      },
    );
  }
  return blocks;
}

function diversityBlocks(report: RunReport): Block[] {
  if (report.evaluations.length === 0) return [];
  return [
    heading(2, 'Diversity'),
    {
      kind: 'table',
      header: [
        'Policy',
        'Distinct final patches',
        'Distinct patches per task',
        'Action-sequence distance',
        'Mean token entropy',
      ],
      numeric: [false, true, true, true, true],
      rows: report.evaluations.map((e) => [
        [code(e.policy)],
        [t(formatCount(e.diversity.distinctPatches))],
        [t(formatNumber(e.diversity.meanPatchesPerTask, 2))],
        [t(formatNumber(e.diversity.actionDistance, 3))],
        [t(formatNumber(e.diversity.meanTokenEntropy, 3))],
      ]),
    },
    para(
      t(
        'Action-sequence distance: mean pairwise distance between the rollouts’ action sequences on a task (0 = identical). Token entropy: mean per-token entropy of the policy over its sampled tokens (— when the server did not report log-probabilities).',
      ),
    ),
  ];
}

function pairingBlocks(report: RunReport): Block[] {
  const pairing = report.pairing;
  if (pairing === null) return [heading(2, 'Pairing'), para(t('This run had no pairing stage.'))];
  const missing = (tasks: string[]): Inline => (tasks.length === 0 ? [t('none')] : codeList(tasks));
  return [
    heading(2, 'Pairing'),
    {
      kind: 'list',
      items: [
        [
          t(
            `${formatCount(pairing.pairs)} preference pairs from ${pairing.tasksCovered} of ${pairing.tasks} tasks.`,
          ),
        ],
        [
          t(
            `${formatCount(pairing.resolvedExamples)} resolved and ${formatCount(pairing.unresolvedExamples)} unresolved trajectories to pair from.`,
          ),
        ],
        [
          t(`Tasks with no resolved rollout (${pairing.tasksWithoutResolved.length}): `),
          ...missing(pairing.tasksWithoutResolved),
        ],
        [
          t(`Tasks with no unresolved rollout (${pairing.tasksWithoutUnresolved.length}): `),
          ...missing(pairing.tasksWithoutUnresolved),
        ],
      ],
    },
  ];
}

function trainingBlocks(report: RunReport, charts: ChartFiles): Block[] {
  if (report.training.length === 0) return [heading(2, 'Training'), para(t('This run trained nothing.'))];
  const blocks: Block[] = [heading(2, 'Training')];
  if (charts.trainingSvgFile) {
    blocks.push({
      kind: 'chart',
      alt: 'Training loss and reward accuracy against step, per training stage',
      file: charts.trainingSvgFile,
      chart: 'training',
    });
  }
  const firstLast = (
    values: number[],
    digits: number,
    format: (v: number) => string = (v) => formatNumber(v, digits),
  ) => (values.length === 0 ? MISSING : `${format(values[0]!)} → ${format(values[values.length - 1]!)}`);
  blocks.push({
    kind: 'table',
    header: [
      'Stage',
      'Mode',
      'Steps',
      'Loss (first → last)',
      'Reward accuracy (first → last)',
      'Margin (last)',
    ],
    numeric: [false, false, true, true, true, true],
    rows: report.training.map((s) => {
      const curve = [...s.curve].sort((a, b) => a.step - b.step);
      const accuracy = curve.flatMap((p) => (p.rewardAccuracy === undefined ? [] : [p.rewardAccuracy]));
      const margins = curve.flatMap((p) => (p.margin === undefined ? [] : [p.margin]));
      return [
        [code(s.stage)],
        [t(s.mode)],
        [t(formatCount(s.steps))],
        [
          t(
            firstLast(
              curve.map((p) => p.loss),
              4,
            ),
          ),
        ],
        [t(firstLast(accuracy, 0, formatPercent))],
        [t(margins.length === 0 ? MISSING : formatNumber(margins[margins.length - 1], 3))],
      ];
    }),
  });
  for (const s of report.training) {
    blocks.push(
      heading(3, `Adapter of ${s.stage}`),
      para(t('Adapter: '), code(s.adapterPath)),
      ...(s.adapterId ? [para(t('In the artifact store: '), code(s.adapterId))] : []),
      para(t('Serve it:')),
      { kind: 'code', text: s.serve },
      para(t('Merge it into the base model:')),
      { kind: 'code', text: s.merge },
    );
  }
  return blocks;
}

function stageBlocks(report: RunReport): Block[] {
  if (report.stages.length === 0) return [];
  const known = (values: (number | null | undefined)[]) =>
    values.every((v) => v === null || v === undefined)
      ? null
      : values.reduce<number>((sum, v) => sum + (v ?? 0), 0);
  const rows: Inline[][] = report.stages.map((s) => [
    [code(s.stage)],
    [t(s.status)],
    [t(formatDuration(s.wallMs))],
    [t(formatDuration(s.activityMs))],
    [t(formatCount(s.tokens))],
    Object.entries(s.artifacts).flatMap(([name, where], i) => [
      ...(i > 0 ? [br] : []),
      t(`${name}: `),
      code(where),
    ]),
    [t(s.note ?? '')],
  ]);
  rows.push([
    [strong('total')],
    [t('')],
    [strong(formatDuration(known(report.stages.map((s) => s.wallMs))))],
    [strong(formatDuration(known(report.stages.map((s) => s.activityMs))))],
    [strong(formatCount(known(report.stages.map((s) => s.tokens))))],
    [t('')],
    [t('')],
  ]);
  return [
    heading(2, 'Stages'),
    {
      kind: 'table',
      header: ['Stage', 'Status', 'Wall time', 'Activity time', 'Tokens', 'Artifacts', 'Note'],
      numeric: [false, false, true, true, true, false, false],
      rows,
    },
    para(
      t(
        'Wall time: from the stage’s start to its end. Activity time: summed over its activities (work done in parallel counts once per activity).',
      ),
    ),
  ];
}

function perTaskBlocks(report: RunReport): Block[] {
  const blocks: Block[] = [];
  for (const e of report.evaluations) {
    if (e.perTask.length === 0) continue;
    blocks.push(heading(3, `Per task: ${e.policy}`), {
      kind: 'table',
      header: [
        'Task',
        'Resolved rollouts',
        'Candidates',
        'Finished',
        'Regression-free',
        'Verifier',
        'Final',
        'Selected resolved',
        'Selected patch',
      ],
      numeric: [false, true, true, true, true, true, true, false, false],
      rows: e.perTask.map((task) => [
        [code(task.taskId)],
        [t(`${task.resolved}/${task.rollouts}`)],
        [t(String(task.survivors.candidates))],
        [t(String(task.survivors.finished))],
        [t(String(task.survivors.regressionFree))],
        [t(String(task.survivors.verifier))],
        [t(String(task.survivors.final))],
        [t(task.selectedResolved === null ? MISSING : task.selectedResolved ? 'yes' : 'no')],
        task.selected === null ? [t('none')] : [code(task.selected)],
      ]),
    });
  }
  if (blocks.length === 0) return [];
  return [
    heading(2, 'Selection per task'),
    para(
      t(
        'How many candidates survived each filter of the hybrid selector: candidates → finished (the agent submitted) → regression-free (existing tests still pass) → verifier → final.',
      ),
    ),
    ...blocks,
  ];
}

function provenanceBlocks(report: RunReport): Block[] {
  const p = report.provenance;
  const seeds = Object.entries(p.seeds);
  const packages = Object.entries(p.packages).sort(([a], [b]) => a.localeCompare(b));
  const blocks: Block[] = [
    heading(2, 'Provenance'),
    {
      kind: 'list',
      items: [
        [t('Commit: '), code(p.commit)],
        [t('Config hash: '), code(p.configHash)],
        [
          t('Seeds: '),
          ...(seeds.length === 0
            ? [t('none recorded')]
            : seeds.flatMap(([name, seed], i) => [
                ...(i > 0 ? [t(', ')] : []),
                t(`${name} `),
                code(String(seed)),
              ])),
        ],
      ],
    },
  ];
  if (packages.length > 0) {
    blocks.push({
      kind: 'table',
      header: ['Package', 'Version'],
      rows: packages.map(([name, version]) => [[code(name)], [code(version)]]),
    });
  }
  return blocks;
}

// ---------------------------------------------------------------------------------------------------------
// Markdown

/** Characters that would start Markdown syntax in running text. */
function escapeMarkdown(text: string, inTable: boolean): string {
  const escaped = text.replace(/[\\`*_[\]<>]/g, (c) => `\\${c}`);
  return inTable ? escaped.replace(/\|/g, '\\|') : escaped;
}

function markdownCode(text: string, inTable: boolean): string {
  const longestRun = Math.max(0, ...(text.match(/`+/g) ?? []).map((run) => run.length));
  const fence = '`'.repeat(longestRun + 1);
  const pad = text.startsWith('`') || text.endsWith('`') ? ' ' : '';
  const body = inTable ? text.replace(/\|/g, '\\|') : text;
  return `${fence}${pad}${body}${pad}${fence}`;
}

function inlineMarkdown(text: Inline, inTable = false): string {
  return text
    .map((span) => {
      if ('br' in span) return '<br>';
      const flat = span.text.replace(/\r?\n/g, ' ');
      if (span.style === 'code') return markdownCode(flat, inTable);
      if (span.style === 'strong') return flat === '' ? '' : `**${escapeMarkdown(flat, inTable)}**`;
      return escapeMarkdown(flat, inTable);
    })
    .join('');
}

function blockMarkdown(block: Block): string {
  switch (block.kind) {
    case 'heading':
      return `${'#'.repeat(block.level)} ${inlineMarkdown(block.text)}`;
    case 'paragraph':
      return inlineMarkdown(block.text);
    case 'list':
      return block.items.map((item) => `- ${inlineMarkdown(item)}`).join('\n');
    case 'code': {
      const fence = '`'.repeat(
        Math.max(3, ...(block.text.match(/`{3,}/g) ?? []).map((run) => run.length + 1)),
      );
      return `${fence}sh\n${block.text}\n${fence}`;
    }
    case 'chart':
      return `![${escapeMarkdown(block.alt, false)}](${block.file})`;
    case 'table': {
      const header = `| ${block.header.map((h) => escapeMarkdown(h, true)).join(' | ')} |`;
      const rule = `| ${block.header.map((_, i) => (block.numeric?.[i] ? '---:' : '---')).join(' | ')} |`;
      const rows = block.rows.map(
        (row) => `| ${row.map((cell) => inlineMarkdown(cell, true)).join(' | ')} |`,
      );
      return [header, rule, ...rows].join('\n');
    }
  }
}

export function renderMarkdown(report: RunReport, charts?: ChartFiles): string {
  return `${reportBlocks(report, charts).map(blockMarkdown).join('\n\n')}\n`;
}

// ---------------------------------------------------------------------------------------------------------
// HTML

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function inlineHtml(text: Inline): string {
  return text
    .map((span) => {
      if ('br' in span) return '<br>';
      const escaped = escapeHtml(span.text);
      if (span.style === 'code') return `<code>${escaped}</code>`;
      if (span.style === 'strong') return `<strong>${escaped}</strong>`;
      return escaped;
    })
    .join('');
}

function blockHtml(block: Block, svgs: { tts?: string; training?: string }): string {
  switch (block.kind) {
    case 'heading':
      return `<h${block.level}>${inlineHtml(block.text)}</h${block.level}>`;
    case 'paragraph':
      return `<p>${inlineHtml(block.text)}</p>`;
    case 'list':
      return `<ul>\n${block.items.map((item) => `<li>${inlineHtml(item)}</li>`).join('\n')}\n</ul>`;
    case 'code':
      return `<pre><code>${escapeHtml(block.text)}</code></pre>`;
    case 'chart': {
      const svg = svgs[block.chart];
      return svg === undefined
        ? `<p>[chart not drawn: ${escapeHtml(block.alt)}]</p>`
        : `<figure role="img" aria-label="${escapeHtml(block.alt)}">${svg}</figure>`;
    }
    case 'table': {
      const cls = (i: number) => (block.numeric?.[i] ? ' class="num"' : '');
      const header = block.header.map((h, i) => `<th${cls(i)}>${escapeHtml(h)}</th>`).join('');
      const rows = block.rows.map(
        (row) => `<tr>${row.map((cell, i) => `<td${cls(i)}>${inlineHtml(cell)}</td>`).join('')}</tr>`,
      );
      // In a scrolling box: ids and paths in cells do not wrap, so a wide table scrolls instead of breaking them.
      return `<div class="wide"><table>\n<thead><tr>${header}</tr></thead>\n<tbody>\n${rows.join('\n')}\n</tbody>\n</table></div>`;
    }
  }
}

/** Small, offline style: no fonts or scripts from elsewhere. */
const REPORT_CSS = `
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  max-width: 1100px; margin: 2rem auto; padding: 0 1.5rem; color: #1f2328; line-height: 1.5; }
h1 { font-size: 1.8rem; border-bottom: 1px solid #d0d7de; padding-bottom: .3rem; }
h2 { font-size: 1.35rem; border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; margin-top: 2rem; }
h3 { font-size: 1.1rem; margin-top: 1.5rem; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .88em;
  background: #f6f8fa; padding: .1em .3em; border-radius: 4px; overflow-wrap: anywhere; }
pre { background: #f6f8fa; padding: .75rem 1rem; border-radius: 6px; overflow-x: auto; }
pre code { padding: 0; background: none; overflow-wrap: normal; }
table { border-collapse: collapse; margin: .75rem 0; font-size: .92rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .6rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fbfcfd; }
td code { white-space: nowrap; }
.wide { overflow-x: auto; }
figure { margin: 1rem 0; overflow-x: auto; }
figure svg { max-width: 100%; height: auto; }
`.trim();

/** The report as one self-contained HTML page: the charts' SVG inlined, the style inline, nothing fetched. */
export function renderHtml(report: RunReport, svgs: { tts?: string; training?: string } = {}): string {
  const charts: ChartFiles = {
    ...(svgs.tts !== undefined ? { ttsSvgFile: 'tts.svg' } : {}),
    ...(svgs.training !== undefined ? { trainingSvgFile: 'training.svg' } : {}),
  };
  const body = reportBlocks(report, charts)
    .map((block) => blockHtml(block, svgs))
    .join('\n');
  return [
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${escapeHtml(report.title)}</title>`,
    `<style>\n${REPORT_CSS}\n</style>`,
    '</head>',
    '<body>',
    body,
    '</body>',
    '</html>',
    '',
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------------------
// Charts (Vega-Lite)

const VEGA_LITE_SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';

/** Curve names in the legend. */
export const TTS_MEASURE = { selected: 'selected (TTS)', passAtK: 'pass@k' } as const;

/**
 * One colour per name across both charts: a policy and the training stage that made it (`sft`,
 * `entropo-dpo`) are drawn in the same colour. Tableau 10, Vega's default.
 */
const PALETTE = [
  '#4c78a8',
  '#f58518',
  '#e45756',
  '#72b7b2',
  '#54a24b',
  '#eeca3b',
  '#b279a2',
  '#ff9da6',
  '#9d755d',
  '#bab0ac',
];

function colourScale(report: RunReport, shown: readonly string[]): { domain: string[]; range: string[] } {
  const all = [
    ...new Set([...report.evaluations.map((e) => e.policy), ...report.training.map((s) => s.stage)]),
  ];
  const domain = [...new Set(shown)];
  return { domain, range: domain.map((name) => PALETTE[all.indexOf(name) % PALETTE.length]!) };
}

/** Legends drawn as line strokes, labels never cut short (Node has no canvas to measure text, so Vega guesses). */
const LINE_LEGEND = { symbolType: 'stroke', symbolStrokeWidth: 2, symbolSize: 400, labelLimit: 0 };

/**
 * Resolve rate (0..1) against N, one colour per policy: the selector's curve solid, pass@k dashed (k on the
 * same axis as N). Exact values are in the report's tables; the chart is for the shape.
 */
export function ttsCurveSpec(report: RunReport): object {
  const values = report.evaluations.flatMap((e) => [
    ...e.ttsCurve.map((p) => ({
      policy: e.policy,
      measure: TTS_MEASURE.selected,
      n: p.n,
      rate: p.resolveRate,
    })),
    ...e.passAtK.map((p) => ({ policy: e.policy, measure: TTS_MEASURE.passAtK, n: p.k, rate: p.value })),
  ]);
  return {
    $schema: VEGA_LITE_SCHEMA,
    title: 'Test-time scaling: resolve rate vs rollouts per task',
    width: 560,
    height: 320,
    background: 'white',
    data: { values },
    mark: { type: 'line', point: true, strokeWidth: 2 },
    encoding: {
      x: {
        field: 'n',
        type: 'quantitative',
        title: 'Rollouts per task (N, or k for pass@k)',
        axis: { tickMinStep: 1, format: 'd' },
        scale: { zero: false, nice: false },
      },
      y: {
        field: 'rate',
        type: 'quantitative',
        title: 'Resolve rate',
        axis: { format: '.0%' },
        scale: { domain: [0, 1] },
      },
      color: {
        field: 'policy',
        type: 'nominal',
        title: 'Policy',
        scale: colourScale(
          report,
          report.evaluations.map((e) => e.policy),
        ),
        legend: LINE_LEGEND,
      },
      strokeDash: {
        field: 'measure',
        type: 'nominal',
        title: 'Curve',
        sort: [TTS_MEASURE.selected, TTS_MEASURE.passAtK],
        scale: {
          domain: [TTS_MEASURE.selected, TTS_MEASURE.passAtK],
          range: [
            [1, 0],
            [6, 4],
          ],
        },
        // A dash pattern has no colour of its own: its legend draws it in grey.
        legend: { ...LINE_LEGEND, encode: { symbols: { update: { stroke: { value: '#555' } } } } },
      },
      tooltip: [
        { field: 'policy', type: 'nominal' },
        { field: 'measure', type: 'nominal' },
        { field: 'n', type: 'quantitative', title: 'N' },
        { field: 'rate', type: 'quantitative', format: '.1%', title: 'resolve rate' },
      ],
    },
  };
}

/**
 * Loss against step, one colour per training stage; beside it reward accuracy against step for the stages
 * that report one (preference training). Stages with different step counts share the step axis.
 */
export function trainingCurveSpec(report: RunReport): object {
  const colour = colourScale(
    report,
    report.training.map((s) => s.stage),
  );
  const loss = report.training.flatMap((s) =>
    s.curve.map((p) => ({ stage: s.stage, step: p.step, value: p.loss })),
  );
  const accuracy = report.training.flatMap((s) =>
    s.curve.flatMap((p) =>
      p.rewardAccuracy === undefined ? [] : [{ stage: s.stage, step: p.step, value: p.rewardAccuracy }],
    ),
  );
  const panel = (title: string, values: object[], yTitle: string, y: object) => ({
    title,
    width: 400,
    height: 260,
    data: { values },
    mark: { type: 'line', point: values.length <= 60, strokeWidth: 2 },
    encoding: {
      x: { field: 'step', type: 'quantitative', title: 'Step', axis: { tickMinStep: 1, format: 'd' } },
      y: { field: 'value', type: 'quantitative', title: yTitle, ...y },
      color: { field: 'stage', type: 'nominal', title: 'Training stage', scale: colour, legend: LINE_LEGEND },
    },
  });
  const panels = [panel('Training loss', loss, 'Loss', { scale: { zero: false } })];
  if (accuracy.length > 0) {
    panels.push(
      panel('Reward accuracy', accuracy, 'Reward accuracy', {
        scale: { domain: [0, 1] },
        axis: { format: '.0%' },
      }),
    );
  }
  return {
    $schema: VEGA_LITE_SCHEMA,
    background: 'white',
    hconcat: panels,
    resolve: { scale: { color: 'shared' } },
  };
}
