/**
 * The skeleton of a Python file for `file_editor view` with `concise`: every line is shown with its number
 * except the bodies of functions (`def`, `async def`, methods and nested functions alike) longer than
 * `MAX_SHOWN_BODY_LINES`, each replaced by one marker naming the elided line range, which `view_range` then
 * shows. Classes, imports, module-level code, decorators and signatures stay, so the model sees where
 * everything is without reading it.
 *
 * It reads indentation, not a Python parse: a function's body is the lines after its signature that are
 * blank or indented deeper than the `def`. A multi-line string or comment that starts at a shallower
 * indentation inside a body ends the elision early; the rest of the body is then shown, never hidden.
 */

export const MAX_SHOWN_BODY_LINES = 2;

export type ConciseLine =
  | { kind: 'line'; number: number; text: string }
  /** Lines `from`..`to` (1-based, inclusive) elided; `indent` is the body's indentation. */
  | { kind: 'elided'; from: number; to: number; indent: string };

const DEF = /^(\s*)(async\s+)?def\s/;

export function isPythonPath(path: string): boolean {
  return /\.pyi?$/.test(path);
}

export function conciseLines(lines: readonly string[]): ConciseLine[] {
  const out: ConciseLine[] = [];
  const show = (i: number) => out.push({ kind: 'line', number: i + 1, text: lines[i]! });
  let i = 0;
  while (i < lines.length) {
    const def = DEF.exec(lines[i]!);
    if (!def) {
      show(i++);
      continue;
    }
    const signatureEnd = findSignatureEnd(lines, i);
    for (let k = i; k <= (signatureEnd ?? i); k++) show(k);
    if (signatureEnd === null) {
      i++;
      continue;
    }
    const defIndent = def[1]!.length;
    let end = signatureEnd + 1;
    while (end < lines.length && (lines[end]!.trim() === '' || indentOf(lines[end]!) > defIndent)) end++;
    while (end > signatureEnd + 1 && lines[end - 1]!.trim() === '') end--;
    const bodyLength = end - (signatureEnd + 1);
    if (bodyLength > MAX_SHOWN_BODY_LINES) {
      const first = lines.slice(signatureEnd + 1, end).find((l) => l.trim() !== '')!;
      out.push({ kind: 'elided', from: signatureEnd + 2, to: end, indent: first.slice(0, indentOf(first)) });
    } else {
      for (let k = signatureEnd + 1; k < end; k++) show(k);
    }
    i = end;
  }
  return out;
}

/**
 * The index of the line that ends the signature starting at `start` (brackets closed, ends with `:`),
 * or null for a one-line function (`def f(): return 1`) or something that is not a signature.
 */
function findSignatureEnd(lines: readonly string[], start: number): number | null {
  let depth = 0;
  for (let k = start; k < lines.length && k < start + 50; k++) {
    const code = lines[k]!.replace(/'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*"/g, '""').replace(/#.*$/, '');
    for (const c of code) {
      if ('([{'.includes(c)) depth++;
      else if (')]}'.includes(c)) depth--;
    }
    const trimmed = code.trimEnd();
    if (depth > 0 || trimmed.endsWith('\\')) continue;
    return trimmed.endsWith(':') ? k : null;
  }
  return null;
}

function indentOf(line: string): number {
  return line.length - line.trimStart().length;
}
