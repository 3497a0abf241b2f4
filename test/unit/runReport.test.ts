import { describe, expect, it } from 'vitest';
import {
  formatCount,
  formatDuration,
  formatPercent,
  renderHtml,
  renderMarkdown,
  TTS_MEASURE,
  trainingCurveSpec,
  ttsCurveSpec,
} from '../../domain/runReport';
import { fixtureRunReport } from '../fixtures/runReport';

const charts = { ttsSvgFile: 'tts.svg', trainingSvgFile: 'training.svg' };

/** The Markdown's lines, to assert whole lines rather than substrings that could match anywhere. */
const linesOf = (markdown: string) => markdown.split('\n');

describe('numbers in the run report', () => {
  it('formats rates, durations and counts the way the tables show them', () => {
    expect([0, 0.25, 1 / 3, 0.1875, 1].map(formatPercent)).toEqual(['0%', '25%', '33.3%', '18.8%', '100%']);
    expect(formatPercent(null)).toBe('—');
    expect(formatPercent(Number.NaN)).toBe('—');
    expect([450, 12_340, 754_000, 7_384_000].map(formatDuration)).toEqual([
      '450 ms',
      '12.3 s',
      '12 m 34 s',
      '2 h 03 m',
    ]);
    expect(formatDuration(null)).toBe('—');
    expect([0, 999, 1000, 1_234_567].map(formatCount)).toEqual(['0', '999', '1,000', '1,234,567']);
  });
});

describe('renderMarkdown', () => {
  const report = fixtureRunReport();
  const markdown = renderMarkdown(report, charts);
  const lines = linesOf(markdown);

  it('opens with the title and the verdict, stated in bold before any detail', () => {
    expect(lines[0]).toBe('# EntroPO pipeline run: SmolLM2-135M on the tiny suite');
    const verdict = lines.indexOf('## Verdict');
    expect(verdict).toBeGreaterThan(0);
    expect(lines[verdict + 2]).toBe(
      '- **SmolLM2-135M-Instruct with EntroPO resolved 1 of 4 test tasks (25%); SFT alone resolved 0 of 4.**',
    );
    expect(verdict).toBeLessThan(lines.indexOf('## Results'));
  });

  it('says plainly when a policy resolved nothing, even without verdict lines', () => {
    expect(lines).toContain(
      '- sft: the selected patch resolved 0 of 4 tasks (0%); none of its 4 rollouts per task resolved any task.',
    );
    const silent = renderMarkdown({ ...report, verdict: [] });
    expect(linesOf(silent)).toContain(
      '- **sft on HuggingFaceTB/SmolLM2-135M-Instruct: the selected patch resolved 0 of 4 tasks (0%); none of its 4 rollouts per task resolved any task.**',
    );
  });

  it('tabulates selected resolve rate, pass@1..N and oracle best-of-N per policy', () => {
    expect(lines).toContain(
      '| Policy | Tasks | N | Selected (pass@1) | pass@1 | pass@2 | pass@3 | pass@4 | Oracle best-of-N |',
    );
    expect(lines).toContain('| `entropo-dpo` | 4 | 4 | 25% (1/4) | 18.8% | 33.3% | 43.8% | 50% | 50% |');
    expect(lines).toContain('| `sft` | 4 | 4 | 0% (0/4) | 0% | 0% | 0% | 0% | 0% |');
    expect(lines).toContain(
      '- entropo-dpo: the selected patch resolved 1 of 4 tasks (25%); at least one of 4 rollouts resolved 2 of 4 (oracle best-of-4: 50%).',
    );
  });

  it('links the TTS chart and lists its values, and links no chart it was not given', () => {
    expect(lines).toContain('![Resolve rate against the number of rollouts N, per policy](tts.svg)');
    expect(lines).toContain('| 1 | 18.8% | 0% |');
    expect(lines).toContain('| 4 | 25% | 0% |');
    const withoutCharts = renderMarkdown(report);
    expect(withoutCharts).not.toContain('](tts.svg)');
    expect(withoutCharts).not.toContain('](training.svg)');
  });

  it('shows diversity, with a missing entropy as a dash', () => {
    expect(lines).toContain('| `entropo-dpo` | 11 | 2.75 | 0.412 | 0.876 |');
    expect(lines).toContain('| `sft` | 5 | 1.25 | 0.100 | — |');
  });

  it('lists pairing statistics and the tasks without a resolved or an unresolved rollout', () => {
    expect(lines).toContain('- 6 preference pairs from 2 of 4 tasks.');
    expect(lines).toContain('- 3 resolved and 13 unresolved trajectories to pair from.');
    expect(lines).toContain(
      '- Tasks with no resolved rollout (2): `sympy__sympy-20590`, `psf__requests-2317`',
    );
    expect(lines).toContain('- Tasks with no unresolved rollout (0): none');
    expect(renderMarkdown({ ...report, pairing: null })).toContain('This run had no pairing stage.');
  });

  it('summarises training curves and says where each adapter is and how to serve or merge it', () => {
    expect(lines).toContain(
      '![Training loss and reward accuracy against step, per training stage](training.svg)',
    );
    expect(lines).toContain('| `sft` | lora | 3 | 2.5000 → 1.8750 | — | — |');
    expect(lines).toContain('| `entropo-dpo` | lora | 4 | 0.6925 → 0.4412 | 50% → 100% | 0.587 |');
    expect(lines).toContain('Adapter: `.entropo/runs/x/adapters/dpo`');
    expect(lines).toContain(`In the artifact store: \`sha256:${'ab'.repeat(32)}\``);
    expect(lines.filter((l) => l.startsWith('In the artifact store'))).toHaveLength(1); // the SFT adapter has none
    expect(markdown).toContain('```sh\nbin/entropo serve --adapter .entropo/runs/x/adapters/dpo\n```');
    expect(markdown).toContain(
      '```sh\nbin/entropo merge --adapter .entropo/runs/x/adapters/sft --out merged-sft\n```',
    );
  });

  it('reports wall time, activity time and tokens per stage, with totals over what is known', () => {
    expect(lines).toContain(
      '| `rollouts` | done | 12 m 34 s | 49 m 41 s | 1,234,567 | trajectories: `.entropo/runs/x/trajectories.jsonl` |  |',
    );
    // A `|` in a note must not end the cell.
    expect(lines).toContain(
      '| `train-dpo` | done | 2 h 03 m | 2 h 03 m | 98,000 | adapter: `.entropo/runs/x/adapters/dpo` | CPU \\| fp32 |',
    );
    expect(lines).toContain('| `report` | pending | — | — | — |  |  |');
    expect(lines).toContain('| **total** |  | **2 h 16 m** | **2 h 53 m** | **1,337,567** |  |  |');
  });

  it('shows per-task selector survivors for each policy', () => {
    expect(lines).toContain('### Per task: entropo-dpo');
    expect(lines).toContain(
      '| `astropy__astropy-12907` | 2/4 | 4 | 4 | 3 | 2 | 1 | yes | `sha256:aaaa1111` |',
    );
    expect(lines).toContain('| `psf__requests-2317` | 0/4 | 4 | 0 | 0 | 0 | 0 | — | none |');
  });

  it('gives the predictions path and the provenance', () => {
    expect(markdown).toContain('`.entropo/runs/x/predictions.jsonl`');
    expect(lines).toContain('- Commit: `32f3206`');
    expect(lines).toContain('- Config hash: `sha256:feedbeef`');
    expect(lines).toContain('- Seeds: rollouts `7`, training `42`');
    expect(lines).toContain('| `vega` | `6.4.0` |');
  });

  it('keeps names that are not Markdown from turning into Markdown', () => {
    const odd = fixtureRunReport();
    odd.verdict = ['a *starred* claim with a [link](x) and <b>tag</b>'];
    odd.evaluations[0]!.perTask[0]!.taskId = 'has|pipe and `tick`';
    const text = renderMarkdown(odd);
    expect(text).toContain('- **a \\*starred\\* claim with a \\[link\\](x) and \\<b\\>tag\\</b\\>**');
    expect(text).toContain('| `` has\\|pipe and `tick` `` | 2/4 |');
  });
});

describe('renderHtml', () => {
  it('has the same content as the Markdown, escaped, with the charts inlined and nothing fetched', () => {
    const report = fixtureRunReport();
    report.title = 'Run <script>alert(1)</script>';
    const html = renderHtml(report, {
      tts: '<svg id="tts-chart"></svg>',
      training: '<svg id="training-chart"></svg>',
    });
    expect(html).toContain('<title>Run &#60;script&#62;alert(1)&#60;/script&#62;</title>');
    expect(html).not.toContain('<script');
    expect(html).toContain('<svg id="tts-chart"></svg>');
    expect(html).toContain('<svg id="training-chart"></svg>');
    expect(html).toContain(
      '<tr><td><code>entropo-dpo</code></td><td class="num">4</td><td class="num">4</td><td class="num">25% (1/4)</td>',
    );
    expect(html).toContain(
      '<pre><code>bin/entropo serve --adapter .entropo/runs/x/adapters/dpo</code></pre>',
    );
    expect(html).not.toMatch(/https?:\/\//);
    expect(html).not.toMatch(/<link|src=|@import|url\(/);
  });
});

describe('chart specs', () => {
  const report = fixtureRunReport();

  it('draws the TTS curve and pass@k for each policy against N on a 0..1 axis', () => {
    // biome-ignore lint/suspicious/noExplicitAny: reading a plain JSON spec
    const spec = ttsCurveSpec(report) as any;
    expect(spec.$schema).toMatch(/vega-lite\/v6/);
    expect(spec.encoding.x.title).toBe('Rollouts per task (N, or k for pass@k)');
    expect(spec.encoding.y.title).toBe('Resolve rate');
    expect(spec.encoding.y.scale.domain).toEqual([0, 1]);
    const rows = spec.data.values as { policy: string; measure: string; n: number; rate: number }[];
    expect(rows).toContainEqual({ policy: 'entropo-dpo', measure: TTS_MEASURE.selected, n: 2, rate: 0.25 });
    expect(rows).toContainEqual({ policy: 'entropo-dpo', measure: TTS_MEASURE.passAtK, n: 4, rate: 0.5 });
    expect(rows.filter((r) => r.policy === 'sft')).toHaveLength(8);
  });

  it('colours a policy and the training stage of the same name alike', () => {
    // biome-ignore lint/suspicious/noExplicitAny: reading a plain JSON spec
    const tts = ttsCurveSpec(report) as any;
    // biome-ignore lint/suspicious/noExplicitAny: reading a plain JSON spec
    const training = trainingCurveSpec(report) as any;
    const colourOf = (scale: { domain: string[]; range: string[] }, name: string) =>
      scale.range[scale.domain.indexOf(name)];
    const trainingScale = training.hconcat[0].encoding.color.scale;
    expect(colourOf(trainingScale, 'sft')).toBe(colourOf(tts.encoding.color.scale, 'sft'));
    expect(colourOf(trainingScale, 'entropo-dpo')).toBe(colourOf(tts.encoding.color.scale, 'entropo-dpo'));
    expect(colourOf(trainingScale, 'sft')).not.toBe(colourOf(trainingScale, 'entropo-dpo'));
  });

  it('draws loss per stage, and reward accuracy only when a stage reports it', () => {
    // biome-ignore lint/suspicious/noExplicitAny: reading a plain JSON spec
    const spec = trainingCurveSpec(report) as any;
    expect(spec.hconcat.map((p: { title: string }) => p.title)).toEqual(['Training loss', 'Reward accuracy']);
    expect(spec.hconcat[0].data.values).toHaveLength(7);
    expect(spec.hconcat[1].data.values).toEqual([
      { stage: 'entropo-dpo', step: 1, value: 0.5 },
      { stage: 'entropo-dpo', step: 2, value: 0.5 },
      { stage: 'entropo-dpo', step: 3, value: 0.75 },
      { stage: 'entropo-dpo', step: 4, value: 1 },
    ]);
    // biome-ignore lint/suspicious/noExplicitAny: reading a plain JSON spec
    const sftOnly = trainingCurveSpec({ ...report, training: [report.training[0]!] }) as any;
    expect(sftOnly.hconcat).toHaveLength(1);
  });
});
