import { describe, expect, it } from 'vitest';
import { interpretReply } from '../../../domain/agent/reply';

/** Every kind of malformed reply gets its own observation, and none throws. */
describe('interpretReply', () => {
  const rejected = (reply: string) => {
    const r = interpretReply(reply);
    if (r.kind !== 'rejected') throw new Error(`expected a rejection, got ${JSON.stringify(r)}`);
    return r;
  };

  it('a valid call becomes an action with its thought', () => {
    const r = interpretReply(
      'Run the tests.\n<function=execute_bash>\n<parameter=cmd>pytest -q</parameter>\n</function>',
    );
    expect(r).toMatchObject({
      kind: 'action',
      thought: 'Run the tests.',
      action: { tool: 'execute_bash', cmd: 'pytest -q' },
    });
    expect(r.kind === 'action' && r.note).toBeNull();
  });

  it('two calls: the first runs, with a note that the second was ignored', () => {
    const r = interpretReply(
      '<function=execute_bash><parameter=cmd>ls</parameter></function><function=finish><parameter=command>submit</parameter></function>',
    );
    expect(r).toMatchObject({ kind: 'action', action: { tool: 'execute_bash', cmd: 'ls' } });
    expect(r.kind === 'action' && r.note).toBe(
      'Note: only the first function call of your reply was run; 1 more function call was ignored. Make one call per reply.',
    );
  });

  it('an empty reply', () => {
    const r = rejected('');
    expect(r.error).toBe('empty_reply');
    expect(r.observation).toMatch(/^Your reply was empty\./);
    expect(r.observation).toContain('<function=execute_bash>');
  });

  it('no call', () => {
    const r = rejected('The bug is in parse().');
    expect(r).toMatchObject({ error: 'no_call', thought: 'The bug is in parse().', call: null });
    expect(r.observation).toMatch(/^Your reply contains no function call, so nothing was run\./);
  });

  it('an unterminated call', () => {
    const r = rejected('<function=execute_bash><parameter=cmd>ls</parameter>');
    expect(r.error).toBe('unterminated_function');
    expect(r.observation).toContain('Your call to execute_bash is not closed with </function>');
  });

  it('an unterminated parameter', () => {
    const r = rejected('<function=execute_bash><parameter=cmd>ls</function>');
    expect(r.error).toBe('unterminated_parameter');
    expect(r.observation).toContain(
      'The parameter cmd of your call to execute_bash is not closed with </parameter>',
    );
  });

  it('a malformed tag', () => {
    const r = rejected('<function=exec bash><parameter=cmd>ls</parameter></function>');
    expect(r.error).toBe('malformed_function_tag');
    expect(r.observation).toContain('`<function=exec bash>` is not well formed');
  });

  it('an unknown tool lists the tools, and keeps the parsed call for the trajectory', () => {
    const r = rejected('<function=bash><parameter=cmd>ls</parameter></function>');
    expect(r).toMatchObject({ error: 'unknown_tool', call: { name: 'bash' } });
    expect(r.observation).toBe(
      'There is no function named bash. The functions are: file_editor, execute_bash, search, finish. Nothing was run.',
    );
  });

  it('an unknown parameter', () => {
    const r = rejected(
      '<function=search><parameter=search_term>x</parameter><parameter=regex>1</parameter></function>',
    );
    expect(r.observation).toBe(
      'search has no parameter regex. Its parameters are: search_term, path. Nothing was run.',
    );
  });

  it('a missing parameter', () => {
    const r = rejected(
      '<function=file_editor><parameter=command>create</parameter><parameter=path>a.py</parameter></function>',
    );
    expect(r.observation).toBe(
      'file_editor create requires the parameter file_text, which your call does not give. Nothing was run.',
    );
  });

  it('an invalid parameter', () => {
    const r = rejected(
      '<function=file_editor><parameter=command>view</parameter><parameter=path>a.py</parameter><parameter=view_range>[9, 2]</parameter></function>',
    );
    expect(r.error).toBe('invalid_parameter');
    expect(r.observation).toMatch(
      /^The value "\[9, 2\]" of the parameter view_range of file_editor is not valid: expected two line numbers/,
    );
  });

  it('an invalid first call followed by more calls says both', () => {
    const r = rejected(
      '<function=nope></function><function=finish><parameter=command>submit</parameter></function>',
    );
    expect(r.observation).toContain('There is no function named nope.');
    expect(r.observation).toContain('1 more function call was ignored');
  });

  it('each malformed kind gets a different observation', () => {
    const replies = [
      '',
      'text',
      '<function=>x</function>',
      '<function=a><parameter=>x</parameter></function>',
      '<function=a>',
      '<function=a><parameter=b>x',
      '<function=a><parameter=b>x</parameter><parameter=b>y</parameter></function>',
      '<function=a></function>',
      '<function=search><parameter=x>1</parameter></function>',
      '<function=search></function>',
      '<function=search><parameter=search_term> </parameter></function>',
    ];
    const observations = replies.map((reply) => rejected(reply).observation);
    expect(new Set(observations).size).toBe(replies.length);
  });
});
