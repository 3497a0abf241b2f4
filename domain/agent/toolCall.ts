/**
 * The parser of the R2E call format, `<function=NAME><parameter=KEY>VALUE</parameter>…</function>`.
 * Only the first call of a reply counts; the text before it is the model's thought. It never throws: every
 * malformed reply comes back as a `FormatError` that `observations.ts` turns into the model's next observation.
 *
 * A parameter's value is taken verbatim except for one newline right after `<parameter=KEY>` and one right
 * before `</parameter>`, which the format puts there for layout (see the system prompt); indentation inside a
 * value is kept, since `old_str` must match the file exactly.
 *
 * If `</function>` is used as a stop sequence, the LLM caller must append it back before parsing.
 */

export interface ToolCall {
  name: string;
  /** Parameters in the order written. Values are strings; `toolActions.ts` checks and converts them. */
  parameters: Record<string, string>;
}

export type FormatError =
  | { kind: 'empty_reply' }
  | { kind: 'no_call' }
  /** `<function=` not followed by a name and `>`. */
  | { kind: 'malformed_function_tag'; text: string }
  | { kind: 'malformed_parameter_tag'; function: string; text: string }
  | { kind: 'unterminated_function'; function: string }
  | { kind: 'unterminated_parameter'; function: string; parameter: string }
  | { kind: 'duplicate_parameter'; function: string; parameter: string };

export type ParsedReply =
  | { ok: true; thought: string; call: ToolCall; ignoredCalls: number }
  | { ok: false; thought: string; error: FormatError };

const FUNCTION_OPEN = '<function=';
const FUNCTION_CLOSE = '</function>';
const PARAMETER_OPEN = '<parameter=';
const PARAMETER_CLOSE = '</parameter>';
/** Names of functions and parameters: what a model could mean as an identifier, nothing with markup in it. */
const NAME = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

export function parseToolCall(reply: string): ParsedReply {
  if (reply.trim() === '') return { ok: false, thought: '', error: { kind: 'empty_reply' } };
  const start = reply.indexOf(FUNCTION_OPEN);
  if (start < 0) return { ok: false, thought: reply.trim(), error: { kind: 'no_call' } };
  const thought = reply.slice(0, start).trim();
  const fail = (error: FormatError): ParsedReply => ({ ok: false, thought, error });

  const nameEnd = reply.indexOf('>', start);
  const name = nameEnd < 0 ? '' : reply.slice(start + FUNCTION_OPEN.length, nameEnd).trim();
  if (!NAME.test(name)) return fail({ kind: 'malformed_function_tag', text: excerpt(reply, start) });

  const entries: [string, string][] = [];
  let pos = nameEnd + 1;
  for (;;) {
    const close = reply.indexOf(FUNCTION_CLOSE, pos);
    const param = reply.indexOf(PARAMETER_OPEN, pos);
    const nextCall = reply.indexOf(FUNCTION_OPEN, pos);
    const firstOf = Math.min(...[close, param, nextCall].map((i) => (i < 0 ? Number.POSITIVE_INFINITY : i)));
    // No closing tag, or a second call opened before this one closed: this call never ended.
    if (firstOf === Number.POSITIVE_INFINITY || firstOf === nextCall) {
      return fail({ kind: 'unterminated_function', function: name });
    }
    if (firstOf === close) {
      pos = close + FUNCTION_CLOSE.length;
      break;
    }
    const keyEnd = reply.indexOf('>', param);
    const key = keyEnd < 0 ? '' : reply.slice(param + PARAMETER_OPEN.length, keyEnd).trim();
    if (!NAME.test(key)) {
      return fail({ kind: 'malformed_parameter_tag', function: name, text: excerpt(reply, param) });
    }
    const valueEnd = reply.indexOf(PARAMETER_CLOSE, keyEnd + 1);
    if (valueEnd < 0) return fail({ kind: 'unterminated_parameter', function: name, parameter: key });
    if (entries.some(([k]) => k === key)) {
      return fail({ kind: 'duplicate_parameter', function: name, parameter: key });
    }
    entries.push([key, layoutTrimmed(reply.slice(keyEnd + 1, valueEnd))]);
    pos = valueEnd + PARAMETER_CLOSE.length;
  }
  // Object.fromEntries defines own properties, so a parameter named `__proto__` is data, not a prototype.
  const call: ToolCall = { name, parameters: Object.fromEntries(entries) };
  return { ok: true, thought, call, ignoredCalls: countOccurrences(reply.slice(pos), FUNCTION_OPEN) };
}

/** Drops the one newline the format puts after the opening tag and the one before the closing tag. */
function layoutTrimmed(value: string): string {
  return value.replace(/^\r?\n/, '').replace(/\r?\n$/, '');
}

function countOccurrences(text: string, needle: string): number {
  let count = 0;
  for (let i = text.indexOf(needle); i >= 0; i = text.indexOf(needle, i + needle.length)) count++;
  return count;
}

/** A bad tag, for the error message: up to its `>` or the end of its line, at most 60 characters. */
function excerpt(text: string, from: number): string {
  const tag = /^[^\n>]*>?/.exec(text.slice(from))![0];
  return tag.length > 60 ? `${tag.slice(0, 60)}…` : tag;
}

/** A call written in the format, as the system prompt and error observations show it. */
export function formatToolCall(call: ToolCall): string {
  const params = Object.entries(call.parameters).map(([key, value]) =>
    value.includes('\n')
      ? `<parameter=${key}>\n${value}\n</parameter>`
      : `<parameter=${key}>${value}</parameter>`,
  );
  return [`<function=${call.name}>`, ...params, FUNCTION_CLOSE].join('\n');
}
