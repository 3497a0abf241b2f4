import { describe, expect, it } from 'vitest';
import { toToolAction } from '../../../domain/agent/toolActions';

const call = (name: string, parameters: Record<string, string>) => toToolAction({ name, parameters });

describe('toToolAction', () => {
  it('file_editor commands with their parameters', () => {
    expect(call('file_editor', { command: 'view', path: 'a.py' })).toEqual({
      ok: true,
      action: { tool: 'file_editor', command: 'view', path: 'a.py', concise: false },
    });
    expect(
      call('file_editor', { command: ' view ', path: 'a.py', view_range: '[3, -1]', concise: 'True' }),
    ).toEqual({
      ok: true,
      action: { tool: 'file_editor', command: 'view', path: 'a.py', viewRange: [3, -1], concise: true },
    });
    expect(call('file_editor', { command: 'create', path: 'b.py', file_text: '' })).toMatchObject({
      ok: true,
      action: { command: 'create', fileText: '' },
    });
    expect(call('file_editor', { command: 'str_replace', path: 'a.py', old_str: 'x' })).toMatchObject({
      ok: true,
      action: { command: 'str_replace', oldStr: 'x', newStr: '' },
    });
    expect(
      call('file_editor', { command: 'insert', path: 'a.py', insert_line: '0', new_str: 'y' }),
    ).toMatchObject({
      ok: true,
      action: { command: 'insert', insertLine: 0, newStr: 'y' },
    });
    expect(call('file_editor', { command: 'undo_edit', path: 'a.py' })).toMatchObject({ ok: true });
  });

  it('view_range accepts the usual spellings and refuses the rest', () => {
    for (const spelling of ['[11, 12]', '11,12', '11 12', ' [11,12] ']) {
      expect(call('file_editor', { command: 'view', path: 'a', view_range: spelling })).toMatchObject({
        ok: true,
        action: { viewRange: [11, 12] },
      });
    }
    for (const bad of ['[0, 3]', '[5, 2]', '[1]', '[1, 2, 3]', 'all', '[1.5, 2]', '[3, -2]']) {
      expect(call('file_editor', { command: 'view', path: 'a', view_range: bad })).toMatchObject({
        ok: false,
        error: { kind: 'invalid_parameter', parameter: 'view_range', value: bad },
      });
    }
  });

  it('execute_bash takes cmd, or command as another name of it, and refuses an empty one', () => {
    expect(call('execute_bash', { cmd: 'ls' })).toEqual({
      ok: true,
      action: { tool: 'execute_bash', cmd: 'ls' },
    });
    expect(call('execute_bash', { command: 'ls' })).toEqual({
      ok: true,
      action: { tool: 'execute_bash', cmd: 'ls' },
    });
    expect(call('execute_bash', { cmd: ' ' })).toMatchObject({
      ok: false,
      error: { kind: 'invalid_parameter' },
    });
  });

  it('search defaults to the repository root; finish needs submit', () => {
    expect(call('search', { search_term: 'foo' })).toEqual({
      ok: true,
      action: { tool: 'search', searchTerm: 'foo', path: '.' },
    });
    expect(call('finish', { command: 'submit', result: 'done' })).toEqual({
      ok: true,
      action: { tool: 'finish', result: 'done' },
    });
    expect(call('finish', {})).toMatchObject({
      ok: false,
      error: { kind: 'missing_parameter', parameter: 'command' },
    });
    expect(call('finish', { command: 'quit' })).toMatchObject({
      ok: false,
      error: { kind: 'invalid_parameter', parameter: 'command', expected: 'one of submit' },
    });
  });

  it('an unknown tool', () => {
    expect(call('str_replace_editor', { command: 'view' })).toEqual({
      ok: false,
      error: { kind: 'unknown_tool', tool: 'str_replace_editor' },
    });
  });

  it('an unknown parameter', () => {
    expect(call('execute_bash', { cmd: 'ls', timeout: '5' })).toEqual({
      ok: false,
      error: { kind: 'unknown_parameter', tool: 'execute_bash', parameter: 'timeout' },
    });
  });

  it('a missing parameter names the command that needs it', () => {
    expect(call('file_editor', { command: 'create', path: 'a.py' })).toEqual({
      ok: false,
      error: { kind: 'missing_parameter', tool: 'file_editor', parameter: 'file_text', command: 'create' },
    });
    expect(call('file_editor', { path: 'a.py' })).toEqual({
      ok: false,
      error: { kind: 'missing_parameter', tool: 'file_editor', parameter: 'command' },
    });
    expect(call('search', {})).toMatchObject({ ok: false, error: { parameter: 'search_term' } });
  });

  it('invalid values', () => {
    expect(call('file_editor', { command: 'delete', path: 'a' })).toMatchObject({
      ok: false,
      error: { kind: 'invalid_parameter', parameter: 'command' },
    });
    expect(
      call('file_editor', { command: 'insert', path: 'a', insert_line: '-1', new_str: 'x' }),
    ).toMatchObject({
      ok: false,
      error: { kind: 'invalid_parameter', parameter: 'insert_line' },
    });
    expect(call('file_editor', { command: 'view', path: 'a', concise: 'maybe' })).toMatchObject({
      ok: false,
      error: { kind: 'invalid_parameter', parameter: 'concise' },
    });
    expect(call('file_editor', { command: 'str_replace', path: 'a', old_str: '' })).toMatchObject({
      ok: false,
      error: { kind: 'invalid_parameter', parameter: 'old_str' },
    });
    expect(call('file_editor', { command: 'view', path: '  ' })).toMatchObject({
      ok: false,
      error: { kind: 'invalid_parameter', parameter: 'path' },
    });
  });
});
