import { describe, expect, it } from 'vitest';
import { type ConciseLine, conciseLines } from '../../../domain/agent/conciseView';

/** The skeleton as text: shown line numbers, and `a-b` for an elided range. */
const skeleton = (source: string) =>
  conciseLines(source.split('\n'))
    .map((l: ConciseLine) => (l.kind === 'line' ? String(l.number) : `${l.from}-${l.to}`))
    .join(' ');

describe('conciseLines', () => {
  it('elides function and method bodies, keeping classes, decorators and signatures', () => {
    const source = [
      'import os', // 1
      'class A:', // 2
      '    x = 1', // 3
      '    @property', // 4
      '    def f(self):', // 5
      '        a = 1', // 6
      '        b = 2', // 7
      '', // 8
      '        return a', // 9
      '', // 10
      '    async def g(self):', // 11
      '        return 1', // 12
      'def h(', // 13
      '    x: "(",', // 14
      ') -> int:', // 15
      '    def inner():', // 16
      '        pass', // 17
      '    return inner()', // 18
      'Y = 2', // 19
    ].join('\n');
    expect(skeleton(source)).toBe('1 2 3 4 5 6-9 10 11 12 13 14 15 16-18 19');
  });

  it('keeps one-line functions and short bodies', () => {
    expect(skeleton('def f(): return 1\ndef g():\n    pass\nx = 1')).toBe('1 2 3 4');
  });

  it('a body ends at the first line indented no deeper than its def; trailing blank lines stay shown', () => {
    expect(skeleton('def f():\n    a\n    b\n    c\n\n\nz')).toBe('1 2-4 5 6 7');
  });

  it('the marker carries the indentation of the body', () => {
    const lines = conciseLines(['class A:', '    def f(self):', '        a', '        b', '        c']);
    expect(lines.at(-1)).toEqual({ kind: 'elided', from: 3, to: 5, indent: '        ' });
  });
});
