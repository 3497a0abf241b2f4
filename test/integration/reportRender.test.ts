import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderRunReport } from '../../activities/reportRender';
import { TTS_MEASURE, trainingCurveSpec, ttsCurveSpec } from '../../domain/runReport';
import { fixtureRunReport } from '../fixtures/runReport';

/** The line marks Vega drew: one `mark-line` group per series, its path labelled with the series' fields. */
function drawnLines(svg: string): string[] {
  const groups = svg.split('<g class="mark-line role-mark').slice(1);
  return groups.map((group) => {
    const drawn = /<path aria-label="([^"]*)"[^>]* d="M[^"]*L[^"]*"/.exec(group);
    return drawn ? drawn[1]! : '(no line drawn)';
  });
}

describe('renderRunReport', () => {
  let dir: string;
  let result: Awaited<ReturnType<typeof renderRunReport>>;

  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'run-report-'));
    result = await renderRunReport(fixtureRunReport(), path.join(dir, 'report'));
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('writes report.md, report.html and both charts', async () => {
    const out = path.join(dir, 'report');
    expect(result).toEqual({
      markdownPath: path.join(out, 'report.md'),
      htmlPath: path.join(out, 'report.html'),
      chartFiles: [path.join(out, 'tts.svg'), path.join(out, 'training.svg')],
    });
    expect((await fs.readdir(out)).sort()).toEqual(['report.html', 'report.md', 'training.svg', 'tts.svg']);
    const markdown = await fs.readFile(result.markdownPath, 'utf8');
    expect(markdown).toContain('](tts.svg)');
    expect(markdown).toContain('](training.svg)');
  });

  it('draws the TTS chart with titled axes and a line per policy and curve', async () => {
    const svg = await fs.readFile(path.join(dir, 'report', 'tts.svg'), 'utf8');
    expect(svg).toMatch(/^<svg /);
    expect(svg).toContain('>Rollouts per task (N, or k for pass@k)</text>');
    expect(svg).toContain('>Resolve rate</text>');
    const lines = drawnLines(svg);
    expect(lines).toHaveLength(4);
    for (const policy of ['entropo-dpo', 'sft']) {
      for (const measure of [TTS_MEASURE.selected, TTS_MEASURE.passAtK]) {
        expect(lines.filter((l) => l.includes(`Policy: ${policy}; Curve: ${measure};`))).toHaveLength(1);
      }
    }
  });

  it('draws loss for both training stages and reward accuracy for the preference stage', async () => {
    const svg = await fs.readFile(path.join(dir, 'report', 'training.svg'), 'utf8');
    for (const title of ['Training loss', 'Reward accuracy', 'Loss', 'Step'])
      expect(svg).toContain(`>${title}</text>`);
    const lines = drawnLines(svg);
    expect(lines).toHaveLength(3);
    expect(lines.filter((l) => l.includes('Training stage: sft'))).toHaveLength(1);
    expect(lines.filter((l) => l.includes('Training stage: entropo-dpo'))).toHaveLength(2);
  });

  it('makes one self-contained HTML page: charts inlined, no script, no URL but the SVG namespaces', async () => {
    const html = await fs.readFile(result.htmlPath, 'utf8');
    expect(html.match(/<svg /g)).toHaveLength(2);
    expect(html).toContain('>Resolve rate</text>');
    expect(html).toContain('<style>');
    expect(html).not.toMatch(/<script|<link|<img|<iframe|src=|@import|@font-face/);
    const withoutNamespaces = html.replace(/ xmlns(:\w+)?="http:\/\/www\.w3\.org\/[^"]*"/g, '');
    expect(withoutNamespaces).not.toMatch(/https?:\/\//);
    expect(withoutNamespaces).not.toMatch(/url\((?!#)/); // only references to the page's own ids
    expect(html).toContain('<strong>SmolLM2-135M-Instruct with EntroPO resolved 1 of 4 test tasks (25%)');
  });

  it('leaves out a chart with nothing to draw, and says so', async () => {
    const report = fixtureRunReport();
    report.training = [];
    const bare = await renderRunReport(report, path.join(dir, 'untrained'));
    expect(bare.chartFiles).toEqual([path.join(dir, 'untrained', 'tts.svg')]);
    expect(await fs.readFile(bare.markdownPath, 'utf8')).toContain('This run trained nothing.');
    expect((await fs.readFile(bare.htmlPath, 'utf8')).match(/<svg /g)).toHaveLength(1);
  });
});

describe('chart specs against vega-lite', () => {
  it('compile without errors or warnings', async () => {
    const vegaLite = (await import('vega-lite' as string)) as typeof import('vega-lite/build/index');
    const report = fixtureRunReport();
    const sftOnly = { ...report, training: [report.training[0]!] };
    for (const spec of [ttsCurveSpec(report), trainingCurveSpec(report), trainingCurveSpec(sftOnly)]) {
      const warnings: unknown[] = [];
      const logger = {
        level: () => logger,
        warn: (...args: unknown[]) => {
          warnings.push(args);
          return logger;
        },
        info: () => logger,
        debug: () => logger,
        error: (...args: unknown[]) => {
          throw new Error(String(args));
        },
      };
      // biome-ignore lint/suspicious/noExplicitAny: our spec builders return plain objects
      const compiled = vegaLite.compile(spec as any, { logger: logger as any });
      expect(warnings).toEqual([]);
      expect(compiled.spec.marks?.length).toBeGreaterThan(0);
    }
  });
});
