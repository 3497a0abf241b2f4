import type { ToolCallError } from './toolActions';
import { TOOL_NAMES, TOOL_PARAMETERS } from './toolActions';
import type { FormatError } from './toolCall';

/**
 * The text the model sees after each step: command output (exit code; long output cut in the middle with a
 * note of how much), clipped file views, and one observation per kind of malformed reply, each saying what
 * was wrong and how to write the call instead.
 */

/** Characters of command output an observation keeps (head and tail). */
export const DEFAULT_OUTPUT_CHARS = 10_000;
/** Characters of a file view, search result or directory listing an observation keeps (the head). */
export const DEFAULT_VIEW_CHARS = 10_000;

const CALL_EXAMPLE = [
  'your reasoning, then exactly one call such as',
  '<function=execute_bash>',
  '<parameter=cmd>ls</parameter>',
  '</function>',
].join('\n');

/** Keeps the head and tail of `text` within `maxChars`, saying in the middle how much was cut. */
export function truncateMiddle(text: string, maxChars: number, note = ''): string {
  if (text.length <= maxChars) return text;
  const headEnd = safeCut(text, Math.ceil(maxChars / 2));
  const tailStart = safeCut(text, text.length - Math.floor(maxChars / 2));
  const cut = tailStart - headEnd;
  return `${text.slice(0, headEnd)}\n[... ${cut} characters cut from the middle of ${text.length}${note} ...]\n${text.slice(tailStart)}`;
}

/**
 * Keeps the head of a view within `maxChars`, ending on a whole line, and marks it `<response clipped>` as
 * the R2E tools do, with a hint of how to see the rest.
 */
export function clipView(text: string, maxChars: number, hint: string): string {
  if (text.length <= maxChars) return text;
  const lineEnd = text.lastIndexOf('\n', maxChars);
  const end = lineEnd > 0 ? lineEnd : safeCut(text, maxChars);
  return `${text.slice(0, end)}\n<response clipped><NOTE>Only the first ${end} of ${text.length} characters are shown. ${hint}</NOTE>`;
}

/** An index not inside a UTF-16 surrogate pair, so a cut never splits a character. */
function safeCut(text: string, index: number): number {
  const code = text.charCodeAt(index);
  return code >= 0xdc00 && code <= 0xdfff ? index - 1 : index;
}

/** What `execute_bash` shows of a command's run; `ExecResult` of the sandbox has this shape. */
export interface CommandResult {
  /** Null when the command was killed (timeout or cancellation). */
  exitCode: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  /** Bytes the sandbox's own output cap already cut from the middle (its text marks where). */
  stdoutCutBytes: number;
  stderrCutBytes: number;
}

export function bashObservation(
  result: CommandResult,
  options: { timeoutSec: number; maxChars?: number },
): string {
  const max = options.maxChars ?? DEFAULT_OUTPUT_CHARS;
  // stderr gets up to half the budget and stdout the rest; either gets what the other leaves unused.
  let stderrBudget = Math.min(result.stderr.length, Math.floor(max / 2));
  const stdoutBudget = max - stderrBudget;
  if (result.stdout.length < stdoutBudget) stderrBudget = max - result.stdout.length;
  const stdout = truncateMiddle(result.stdout, stdoutBudget, sandboxCutNote(result.stdoutCutBytes));
  const stderr = truncateMiddle(result.stderr, stderrBudget, sandboxCutNote(result.stderrCutBytes));
  const status = result.timedOut
    ? `Exit code: -1 (the command ran longer than ${options.timeoutSec} seconds and was killed; run long commands with a smaller input, or in the background with output redirected to a file)`
    : result.exitCode === null
      ? 'Exit code: -1 (the command was killed)'
      : `Exit code: ${result.exitCode}`;
  const parts = [status];
  if (stdout === '' && stderr === '') parts.push('(no output)');
  if (stdout !== '') parts.push(`[STDOUT]\n${stdout}`);
  if (stderr !== '') parts.push(`[STDERR]\n${stderr}`);
  return parts.join('\n');
}

function sandboxCutNote(bytes: number): string {
  return bytes > 0 ? `, after ${bytes} bytes were already cut by the sandbox's output limit` : '';
}

export function formatErrorObservation(error: FormatError): string {
  switch (error.kind) {
    case 'empty_reply':
      return `Your reply was empty. Reply with ${CALL_EXAMPLE}`;
    case 'no_call':
      return `Your reply contains no function call, so nothing was run. Reply with ${CALL_EXAMPLE}\nWhen the task is done, call finish.`;
    case 'malformed_function_tag':
      return `The call tag \`${error.text}\` is not well formed: write \`<function=NAME>\` with a function name (${TOOL_NAMES.join(', ')}) and a closing \`>\`. Nothing was run.`;
    case 'malformed_parameter_tag':
      return `In your call to ${error.function}, the parameter tag \`${error.text}\` is not well formed: write \`<parameter=NAME>value</parameter>\`. Nothing was run.`;
    case 'unterminated_function':
      return `Your call to ${error.function} is not closed with </function> (or another call starts before it is), so it was not run. End every call with </function>, and make one call per reply.`;
    case 'unterminated_parameter':
      return `The parameter ${error.parameter} of your call to ${error.function} is not closed with </parameter>, so the call was not run.`;
    case 'duplicate_parameter':
      return `The parameter ${error.parameter} is given more than once in your call to ${error.function}; give each parameter once. Nothing was run.`;
  }
}

export function toolCallErrorObservation(error: ToolCallError): string {
  switch (error.kind) {
    case 'unknown_tool':
      return `There is no function named ${error.tool}. The functions are: ${TOOL_NAMES.join(', ')}. Nothing was run.`;
    case 'unknown_parameter':
      return `${error.tool} has no parameter ${error.parameter}. Its parameters are: ${TOOL_PARAMETERS[error.tool].join(', ')}. Nothing was run.`;
    case 'missing_parameter':
      return `${error.command ? `${error.tool} ${error.command}` : error.tool} requires the parameter ${error.parameter}, which your call does not give. Nothing was run.`;
    case 'invalid_parameter':
      return `The value ${JSON.stringify(truncateMiddle(error.value, 200))} of the parameter ${error.parameter} of ${error.tool} is not valid: expected ${error.expected}. Nothing was run.`;
  }
}

/** Appended when a reply held more calls than the first, which alone was run. */
export function ignoredCallsNote(ignoredCalls: number): string | null {
  if (ignoredCalls === 0) return null;
  const them = ignoredCalls === 1 ? '1 more function call was' : `${ignoredCalls} more function calls were`;
  return `Note: only the first function call of your reply was run; ${them} ignored. Make one call per reply.`;
}

/** The observation followed by each note that applies (ignored calls, steps remaining), a blank line apart. */
export function withNotes(observation: string, notes: readonly (string | null)[]): string {
  return [observation, ...notes.filter((n): n is string => n !== null && n !== '')].join('\n\n');
}
