import { describe, expect, it } from 'vitest';
import {
  bashObservation,
  type CommandResult,
  clipView,
  truncateMiddle,
  withNotes,
} from '../../../domain/agent/observations';

const result = (over: Partial<CommandResult>): CommandResult => ({
  exitCode: 0,
  stdout: '',
  stderr: '',
  timedOut: false,
  stdoutCutBytes: 0,
  stderrCutBytes: 0,
  ...over,
});

describe('truncateMiddle', () => {
  it('leaves short text alone', () => {
    expect(truncateMiddle('abc', 3)).toBe('abc');
  });

  it('keeps head and tail and says how much of how much was cut', () => {
    const text = `${'a'.repeat(500)}${'b'.repeat(1000)}${'c'.repeat(500)}`;
    const out = truncateMiddle(text, 100);
    expect(out).toBe(
      `${'a'.repeat(50)}\n[... 1900 characters cut from the middle of 2000 ...]\n${'c'.repeat(50)}`,
    );
  });

  it('never splits a character made of two UTF-16 units', () => {
    const out = truncateMiddle('😀'.repeat(100), 11);
    expect(out).not.toMatch(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/);
  });
});

describe('clipView', () => {
  it('clips on a line boundary and marks it as R2E does', () => {
    const text = Array.from({ length: 100 }, (_, i) => `line ${i}`).join('\n');
    const out = clipView(text, 50, 'Use view_range.');
    expect(out.split('\n<response clipped>')[0]).toBe(
      'line 0\nline 1\nline 2\nline 3\nline 4\nline 5\nline 6',
    );
    expect(out).toContain(
      '<response clipped><NOTE>Only the first 48 of 789 characters are shown. Use view_range.</NOTE>',
    );
  });
});

describe('bashObservation', () => {
  it('shows the exit code and both streams', () => {
    expect(
      bashObservation(result({ exitCode: 2, stdout: 'out\n', stderr: 'err\n' }), { timeoutSec: 30 }),
    ).toBe('Exit code: 2\n[STDOUT]\nout\n\n[STDERR]\nerr\n');
  });

  it('says when there was no output', () => {
    expect(bashObservation(result({}), { timeoutSec: 30 })).toBe('Exit code: 0\n(no output)');
  });

  it('a timeout and a kill are exit code -1 with the reason', () => {
    expect(bashObservation(result({ exitCode: null, timedOut: true }), { timeoutSec: 30 })).toMatch(
      /^Exit code: -1 \(the command ran longer than 30 seconds and was killed;/,
    );
    expect(bashObservation(result({ exitCode: null }), { timeoutSec: 30 })).toBe(
      'Exit code: -1 (the command was killed)\n(no output)',
    );
  });

  it('cuts long output in the middle within the budget, stderr getting at most half', () => {
    const out = bashObservation(result({ stdout: 'o'.repeat(5000), stderr: 'e'.repeat(5000) }), {
      timeoutSec: 30,
      maxChars: 1000,
    });
    const cut = (c: string) =>
      `${c.repeat(250)}\n[... 4500 characters cut from the middle of 5000 ...]\n${c.repeat(250)}`;
    expect(out).toBe(`Exit code: 0\n[STDOUT]\n${cut('o')}\n[STDERR]\n${cut('e')}`);
  });

  it('gives stdout what stderr leaves unused', () => {
    const out = bashObservation(result({ stdout: 'o'.repeat(5000), stderr: 'e'.repeat(10) }), {
      timeoutSec: 30,
      maxChars: 1000,
    });
    expect(out).toContain('[... 4010 characters cut from the middle of 5000 ...]');
  });

  it('mentions what the sandbox had already cut when it cuts again', () => {
    const out = bashObservation(result({ stdout: 'o'.repeat(3000), stdoutCutBytes: 7000 }), {
      timeoutSec: 30,
      maxChars: 1000,
    });
    expect(out).toContain(
      "[... 2000 characters cut from the middle of 3000, after 7000 bytes were already cut by the sandbox's output limit ...]",
    );
  });
});

describe('withNotes', () => {
  it('appends the notes that apply', () => {
    expect(withNotes('obs', [null, 'a', '', 'b'])).toBe('obs\n\na\n\nb');
  });
});
