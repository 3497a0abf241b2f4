import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type * as VegaLite from 'vega-lite/build/index';
import {
  type RunReport,
  renderHtml,
  renderMarkdown,
  trainingCurveSpec,
  ttsCurveSpec,
} from '../domain/runReport';

/**
 * Writes a run's report: `report.md` (charts linked as `tts.svg`, `training.svg` beside it) and
 * `report.html` (one self-contained page: the same content with the charts' SVG inlined, nothing fetched).
 * A chart with nothing to draw (no evaluation, or no training curve) is left out, and the report says so.
 */
export async function renderRunReport(
  report: RunReport,
  dir: string,
): Promise<{ markdownPath: string; htmlPath: string; chartFiles: string[] }> {
  await fs.mkdir(dir, { recursive: true });
  const svgs: { tts?: string; training?: string } = {};
  const hasTts = report.evaluations.some((e) => e.ttsCurve.length > 0 || e.passAtK.length > 0);
  if (hasTts) svgs.tts = await vegaLiteToSvg(ttsCurveSpec(report), 'tts');
  if (report.training.some((s) => s.curve.length > 0)) {
    svgs.training = await vegaLiteToSvg(trainingCurveSpec(report), 'training');
  }

  const chartFiles: string[] = [];
  const charts: { ttsSvgFile?: string; trainingSvgFile?: string } = {};
  for (const [chart, svg] of Object.entries(svgs)) {
    const file = `${chart}.svg`;
    await writeFileAtomically(path.join(dir, file), svg);
    chartFiles.push(path.join(dir, file));
    if (chart === 'tts') charts.ttsSvgFile = file;
    else charts.trainingSvgFile = file;
  }
  const markdownPath = path.join(dir, 'report.md');
  const htmlPath = path.join(dir, 'report.html');
  await writeFileAtomically(markdownPath, renderMarkdown(report, charts));
  await writeFileAtomically(htmlPath, renderHtml(report, svgs));
  return { markdownPath, htmlPath, chartFiles };
}

/**
 * Vega-Lite → Vega → SVG, headless (no canvas, no DOM). `idPrefix` makes the SVG's element ids (clip paths)
 * unique per chart: both charts are inlined into one HTML page, where equal ids would clip the wrong chart.
 */
export async function vegaLiteToSvg(spec: object, idPrefix: string): Promise<string> {
  // vega and vega-lite ship only as ES modules; this project is CommonJS, so they are imported dynamically.
  const [vega, vegaLite] = await Promise.all([import('vega'), importVegaLite()]);
  const compiled = vegaLite.compile(spec as VegaLite.TopLevelSpec).spec;
  // The data is inline; a loader that refuses every load keeps rendering offline whatever the spec says.
  const offline = vega.loader();
  offline.load = async (uri: string) => {
    throw new Error(`report charts are drawn offline; refusing to load ${uri}`);
  };
  const view = new vega.View(vega.parse(compiled), {
    renderer: 'none',
    loader: offline,
    logLevel: vega.Warn,
  });
  try {
    const svg = await view.toSVG();
    return svg
      .replace(/\bid="([^"]+)"/g, `id="${idPrefix}-$1"`)
      .replace(/url\(#([^)]+)\)/g, `url(#${idPrefix}-$1)`);
  } finally {
    view.finalize();
  }
}

/**
 * vega-lite's types are reachable only through its `exports` map, which this project's `moduleResolution:
 * node` does not read; the types are taken from their file, the module from its name.
 */
async function importVegaLite(): Promise<typeof VegaLite> {
  const specifier: string = 'vega-lite';
  return (await import(specifier)) as typeof VegaLite;
}

async function writeFileAtomically(target: string, content: string): Promise<void> {
  const temporary = `${target}.${process.pid}.tmp`;
  await fs.writeFile(temporary, content, 'utf8');
  await fs.rename(temporary, target);
}
