import type { InputProblem } from './schemaErrors';

export interface JsonRow {
  /** 1-based line of the file where the row starts. */
  line: number;
  /** 1-based element number, when the file is a JSON array (a one-line array has every row on line 1). */
  element?: number;
  value: unknown;
}

/**
 * The 1-based line of a `JSON.parse` syntax error in `text`, from the position V8 puts in its message
 * ("… in JSON at position 17", newer versions add "(line 2 column 5)"); undefined when it gives none.
 */
export function jsonErrorLine(text: string, error: unknown): number | undefined {
  const message = (error as Error).message ?? '';
  const line = /\(line (\d+) column \d+\)/.exec(message);
  if (line) return Number(line[1]);
  const position = /at position (\d+)/.exec(message);
  if (position) return lineAt(text, Number(position[1]));
  // "Unexpected end of JSON input": the error is at the end of the text.
  return /end of JSON input/.test(message) ? lineAt(text, text.length) : undefined;
}

function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

/** The 1-based lines where the elements of a (valid) top-level JSON array start, in one pass. */
function arrayElementLines(text: string): number[] {
  const lines: number[] = [];
  let line = 1;
  let depth = 0;
  let inString = false;
  let expectElement = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '\n') line++;
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') continue;
    if (expectElement && c !== ']') lines.push(line);
    expectElement = false;
    if (c === '"') inString = true;
    else if (c === '[' || c === '{') {
      depth++;
      if (depth === 1) expectElement = true;
    } else if (c === ']' || c === '}') depth--;
    else if (c === ',' && depth === 1) expectElement = true;
  }
  return lines;
}

/**
 * The rows of a JSONL file or a JSON array, each with the line it starts on (and its element number in
 * an array); each JSON syntax error is a problem with its file and line.
 */
export function readJsonRows(text: string, file: string): { rows: JsonRow[]; problems: InputProblem[] } {
  const rows: JsonRow[] = [];
  const problems: InputProblem[] = [];
  if (text.trimStart().startsWith('[')) {
    let values: unknown[];
    try {
      values = JSON.parse(text) as unknown[];
    } catch (e) {
      problems.push({
        file,
        line: jsonErrorLine(text, e),
        field: '',
        message: `not valid JSON: ${(e as Error).message}`,
      });
      return { rows, problems };
    }
    const lines = arrayElementLines(text);
    values.forEach((value, i) => {
      rows.push({ line: lines[i] ?? 1, element: i + 1, value });
    });
    return { rows, problems };
  }
  text.split('\n').forEach((raw, i) => {
    if (raw.trim() === '') return;
    try {
      rows.push({ line: i + 1, value: JSON.parse(raw) });
    } catch (e) {
      problems.push({ file, line: i + 1, field: '', message: `not valid JSON: ${(e as Error).message}` });
    }
  });
  return { rows, problems };
}
