import { describe, expect, it } from 'vitest';
import { systemPrompt, taskMessage } from '../../../domain/agent/prompts';
import { TOOL_NAMES, TOOL_PARAMETERS } from '../../../domain/agent/toolActions';
import { parseToolCall } from '../../../domain/agent/toolCall';

describe('systemPrompt', () => {
  const prompt = systemPrompt({ repoRoot: '/work/repo', commandTimeoutSec: 90 });

  it('describes the four tools and every parameter the parser accepts', () => {
    TOOL_NAMES.forEach((tool, i) => {
      expect(prompt).toContain(`---- BEGIN FUNCTION #${i + 1}: ${tool} ----`);
    });
    for (const tool of TOOL_NAMES) {
      for (const parameter of TOOL_PARAMETERS[tool]) {
        // `command` of execute_bash is an accepted alias, not documented.
        if (tool !== 'execute_bash' || parameter !== 'command') expect(prompt).toContain(`) ${parameter} (`);
      }
    }
  });

  it('names the sandbox repository root and the command timeout', () => {
    expect(prompt).toContain('e.g. `/work/repo/file.py` or `/work/repo`');
    expect(prompt).toContain('longer than 90 seconds is killed');
    expect(prompt).not.toContain('/testbed');
  });

  it('its format example is what the parser reads', () => {
    const example = prompt.slice(
      prompt.indexOf('<function=example_function_name>'),
      prompt.indexOf('</function>') + 11,
    );
    expect(parseToolCall(`thought\n${example}`)).toEqual({
      ok: true,
      thought: 'thought',
      call: {
        name: 'example_function_name',
        parameters: {
          example_parameter_1: 'value_1',
          example_parameter_2: 'This is the value for the second parameter\nthat can span\nmultiple lines',
        },
      },
      ignoredCalls: 0,
    });
  });
});

describe('taskMessage', () => {
  it('holds the problem statement and the repository root', () => {
    const message = taskMessage('\nparse() fails on empty input\n', { repoRoot: '/testbed' });
    expect(message).toContain('<github_issue>\nparse() fails on empty input\n</github_issue>');
    expect(message).toContain('non-test files in the /testbed directory');
  });
});
