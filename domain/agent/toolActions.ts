import type { ToolCall } from './toolCall';

/**
 * The four tools of the R2E scaffold as typed actions, and the check that turns a parsed call into one.
 * A call that names an unknown tool, lacks a required parameter, gives an unknown one or a value of the
 * wrong shape becomes a `ToolCallError` (and then an observation), never an exception.
 */

export const TOOL_NAMES = ['file_editor', 'execute_bash', 'search', 'finish'] as const;
export type ToolName = (typeof TOOL_NAMES)[number];

export const FILE_EDITOR_COMMANDS = ['view', 'create', 'str_replace', 'insert', 'undo_edit'] as const;
export type FileEditorCommandName = (typeof FILE_EDITOR_COMMANDS)[number];

/** `[start, end]`, 1-based and inclusive; `end` −1 means to the end of the file. */
export type ViewRange = [number, number];

export type FileEditorAction =
  | { tool: 'file_editor'; command: 'view'; path: string; viewRange?: ViewRange; concise: boolean }
  | { tool: 'file_editor'; command: 'create'; path: string; fileText: string }
  | { tool: 'file_editor'; command: 'str_replace'; path: string; oldStr: string; newStr: string }
  | { tool: 'file_editor'; command: 'insert'; path: string; insertLine: number; newStr: string }
  | { tool: 'file_editor'; command: 'undo_edit'; path: string };

export type ToolAction =
  | FileEditorAction
  | { tool: 'execute_bash'; cmd: string }
  | { tool: 'search'; searchTerm: string; path: string }
  | { tool: 'finish'; result: string };

export type ToolCallError =
  | { kind: 'unknown_tool'; tool: string }
  | { kind: 'unknown_parameter'; tool: ToolName; parameter: string }
  /** `command` names the file_editor command that needs the parameter, when it is one command's. */
  | { kind: 'missing_parameter'; tool: ToolName; parameter: string; command?: string }
  | { kind: 'invalid_parameter'; tool: ToolName; parameter: string; value: string; expected: string };

export type ActionResult = { ok: true; action: ToolAction } | { ok: false; error: ToolCallError };

/** The parameters each tool accepts. `command` is accepted for `execute_bash` as another name of `cmd`. */
export const TOOL_PARAMETERS: Record<ToolName, readonly string[]> = {
  file_editor: ['command', 'path', 'file_text', 'old_str', 'new_str', 'insert_line', 'view_range', 'concise'],
  execute_bash: ['cmd', 'command'],
  search: ['search_term', 'path'],
  finish: ['command', 'result'],
};

class CallProblem extends Error {
  constructor(readonly error: ToolCallError) {
    super(error.kind);
  }
}

export function toToolAction(call: ToolCall): ActionResult {
  if (!(TOOL_NAMES as readonly string[]).includes(call.name)) {
    return { ok: false, error: { kind: 'unknown_tool', tool: call.name } };
  }
  const tool = call.name as ToolName;
  const unknown = Object.keys(call.parameters).find((p) => !TOOL_PARAMETERS[tool].includes(p));
  if (unknown !== undefined)
    return { ok: false, error: { kind: 'unknown_parameter', tool, parameter: unknown } };
  try {
    return { ok: true, action: ACTION_OF[tool](new Params(tool, call.parameters)) };
  } catch (e) {
    if (e instanceof CallProblem) return { ok: false, error: e.error };
    throw e;
  }
}

const ACTION_OF: Record<ToolName, (p: Params) => ToolAction> = {
  file_editor: fileEditorAction,
  // R2E lets an empty `cmd` read more output of a running process; here every command runs to its end.
  execute_bash: (p) => ({ tool: 'execute_bash', cmd: p.nonEmpty('cmd', { alias: 'command' }) }),
  search: (p) => ({ tool: 'search', searchTerm: p.nonEmpty('search_term'), path: p.optional('path') ?? '.' }),
  finish: (p) => {
    p.oneOf('command', ['submit']);
    return { tool: 'finish', result: p.optional('result') ?? '' };
  },
};

function fileEditorAction(p: Params): FileEditorAction {
  const command = p.oneOf('command', FILE_EDITOR_COMMANDS);
  const path = p.nonEmpty('path');
  switch (command) {
    case 'view': {
      const range = p.optional('view_range');
      const concise = p.optional('concise');
      return {
        tool: 'file_editor',
        command,
        path,
        ...(range !== undefined ? { viewRange: parseViewRange(p, range) } : {}),
        concise: concise !== undefined && parseBoolean(p, 'concise', concise),
      };
    }
    case 'create':
      return { tool: 'file_editor', command, path, fileText: p.required('file_text', { command }) };
    case 'str_replace':
      return {
        tool: 'file_editor',
        command,
        path,
        oldStr: p.nonEmpty('old_str', { command }),
        newStr: p.optional('new_str') ?? '',
      };
    case 'insert':
      return {
        tool: 'file_editor',
        command,
        path,
        insertLine: parseLineNumber(p, p.required('insert_line', { command })),
        newStr: p.required('new_str', { command }),
      };
    case 'undo_edit':
      return { tool: 'file_editor', command, path };
  }
}

/** `[11, 12]`, `11, 12`, `11 12` or `[5, -1]`. Checked against the file's length when it is viewed. */
function parseViewRange(p: Params, value: string): ViewRange {
  const parts = value
    .trim()
    .replace(/^\[|\]$/g, '')
    .split(/[\s,]+/)
    .filter((s) => s !== '');
  const numbers = parts.map((s) => (/^-?\d+$/.test(s) ? Number(s) : Number.NaN));
  const [start, end] = numbers;
  if (numbers.length !== 2 || !(start! >= 1) || !(end === -1 || end! >= start!)) {
    p.invalid(
      'view_range',
      value,
      'two line numbers [start, end] with 1 ≤ start ≤ end, or end = -1 for the end of the file',
    );
  }
  return [start!, end!];
}

function parseLineNumber(p: Params, value: string): number {
  if (!/^\s*\d+\s*$/.test(value))
    p.invalid('insert_line', value, 'a whole number ≥ 0 (0 inserts at the top)');
  return Number(value);
}

function parseBoolean(p: Params, name: string, value: string): boolean {
  const v = value.trim().toLowerCase();
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  return p.invalid(name, value, 'true or false');
}

class Params {
  constructor(
    private readonly tool: ToolName,
    private readonly values: Record<string, string>,
  ) {}

  has(name: string): boolean {
    return Object.hasOwn(this.values, name);
  }

  optional(name: string): string | undefined {
    return this.has(name) ? this.values[name] : undefined;
  }

  /** `alias`: another accepted name; `command`: the file_editor command that needs it, for the message. */
  required(name: string, { alias, command }: { alias?: string; command?: string } = {}): string {
    const value = this.optional(name) ?? (alias !== undefined ? this.optional(alias) : undefined);
    if (value === undefined) {
      throw new CallProblem({
        kind: 'missing_parameter',
        tool: this.tool,
        parameter: name,
        ...(command ? { command } : {}),
      });
    }
    return value;
  }

  nonEmpty(name: string, context: { alias?: string; command?: string } = {}): string {
    const value = this.required(name, context);
    if (value.trim() === '') this.invalid(name, value, 'a non-empty value');
    return value;
  }

  oneOf<T extends string>(name: string, allowed: readonly T[]): T {
    const value = this.required(name).trim();
    if (!(allowed as readonly string[]).includes(value))
      this.invalid(name, value, `one of ${allowed.join(', ')}`);
    return value as T;
  }

  invalid(parameter: string, value: string, expected: string): never {
    throw new CallProblem({ kind: 'invalid_parameter', tool: this.tool, parameter, value, expected });
  }
}
