import { describe, expect, it } from 'vitest';
import { formatToolCall, parseToolCall } from '../../../domain/agent/toolCall';

describe('parseToolCall', () => {
  it('reads the call and takes the text before it as the thought', () => {
    const parsed = parseToolCall(
      'Let me look at the file.\n<function=file_editor>\n<parameter=command>view</parameter>\n<parameter=path>/testbed/a.py</parameter>\n</function>',
    );
    expect(parsed).toEqual({
      ok: true,
      thought: 'Let me look at the file.',
      call: { name: 'file_editor', parameters: { command: 'view', path: '/testbed/a.py' } },
      ignoredCalls: 0,
    });
  });

  it('keeps a multi-line value verbatim except the layout newlines around it', () => {
    const parsed = parseToolCall(
      '<function=file_editor>\n<parameter=old_str>\n    def f(x):\n        return x\n</parameter>\n</function>',
    );
    expect(parsed.ok && parsed.call.parameters.old_str).toBe('    def f(x):\n        return x');
  });

  it('keeps a value that itself contains markup of the format', () => {
    const parsed = parseToolCall(
      '<function=file_editor><parameter=new_str>s = "</function> <function=x>"</parameter></function>',
    );
    expect(parsed.ok && parsed.call.parameters.new_str).toBe('s = "</function> <function=x>"');
  });

  it('counts only the first call and says how many more were ignored', () => {
    const call = '<function=execute_bash><parameter=cmd>ls</parameter></function>';
    const parsed = parseToolCall(`a\n${call}\nthen\n${call.replace('ls', 'pwd')}\n${call}`);
    expect(parsed.ok && parsed.call.parameters.cmd).toBe('ls');
    expect(parsed.ok && parsed.ignoredCalls).toBe(2);
  });

  it('an empty or blank reply', () => {
    expect(parseToolCall('')).toEqual({ ok: false, thought: '', error: { kind: 'empty_reply' } });
    expect(parseToolCall('  \n\t ')).toEqual({ ok: false, thought: '', error: { kind: 'empty_reply' } });
  });

  it('a reply without a call keeps the text as the thought', () => {
    expect(parseToolCall('I think the bug is in utils.py.')).toEqual({
      ok: false,
      thought: 'I think the bug is in utils.py.',
      error: { kind: 'no_call' },
    });
  });

  it('a call tag without a name or closing bracket', () => {
    const noName = parseToolCall('x <function=><parameter=cmd>ls</parameter></function>');
    expect(noName).toMatchObject({ ok: false, thought: 'x', error: { kind: 'malformed_function_tag' } });
    const noBracket = parseToolCall('<function=execute_bash\n<parameter=cmd>ls</parameter>');
    expect(noBracket).toMatchObject({ ok: false, error: { kind: 'malformed_function_tag' } });
  });

  it('a call that is never closed', () => {
    expect(parseToolCall('<function=execute_bash>\n<parameter=cmd>ls</parameter>\n')).toMatchObject({
      ok: false,
      error: { kind: 'unterminated_function', function: 'execute_bash' },
    });
  });

  it('a second call that opens before the first is closed', () => {
    expect(
      parseToolCall(
        '<function=search><parameter=search_term>x</parameter>\n<function=finish><parameter=command>submit</parameter></function>',
      ),
    ).toMatchObject({ ok: false, error: { kind: 'unterminated_function', function: 'search' } });
  });

  it('a parameter that is never closed', () => {
    expect(parseToolCall('<function=execute_bash><parameter=cmd>ls -la\n</function>')).toMatchObject({
      ok: false,
      error: { kind: 'unterminated_parameter', function: 'execute_bash', parameter: 'cmd' },
    });
  });

  it('a malformed parameter tag', () => {
    expect(parseToolCall('<function=execute_bash><parameter=>ls</parameter></function>')).toMatchObject({
      ok: false,
      error: { kind: 'malformed_parameter_tag', function: 'execute_bash' },
    });
  });

  it('a parameter given twice', () => {
    expect(
      parseToolCall(
        '<function=execute_bash><parameter=cmd>ls</parameter><parameter=cmd>pwd</parameter></function>',
      ),
    ).toMatchObject({ ok: false, error: { kind: 'duplicate_parameter', parameter: 'cmd' } });
  });

  it('a parameter named __proto__ is plain data', () => {
    const parsed = parseToolCall('<function=finish><parameter=__proto__>x</parameter></function>');
    expect(parsed.ok && Object.keys(parsed.call.parameters)).toEqual(['__proto__']);
    expect(parsed.ok && Object.getPrototypeOf(parsed.call.parameters)).toBe(Object.prototype);
  });

  it('formatToolCall writes what parseToolCall reads', () => {
    const call = {
      name: 'file_editor',
      parameters: { command: 'create', path: 'a.py', file_text: 'x = 1\n\ny = 2' },
    };
    const parsed = parseToolCall(`thinking\n${formatToolCall(call)}`);
    expect(parsed).toEqual({ ok: true, thought: 'thinking', call, ignoredCalls: 0 });
  });
});
