import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { resolveRepoPath, shellQuote } from '../../../domain/agent/repoPaths';

const ok = (input: string, root = '/testbed') => {
  const r = resolveRepoPath(input, root);
  if (!r.ok) throw new Error(r.message);
  return r.path;
};

describe('resolveRepoPath', () => {
  it('relative paths, absolute paths under the root, and the root itself', () => {
    expect(ok('src/a.py')).toEqual({ relative: 'src/a.py', absolute: '/testbed/src/a.py' });
    expect(ok('/testbed/src/./b/../a.py')).toEqual({ relative: 'src/a.py', absolute: '/testbed/src/a.py' });
    expect(ok('/testbed')).toEqual({ relative: '.', absolute: '/testbed' });
    expect(ok('/testbed/')).toEqual({ relative: '.', absolute: '/testbed' });
    expect(ok('.')).toEqual({ relative: '.', absolute: '/testbed' });
    expect(ok('./a/')).toEqual({ relative: 'a', absolute: '/testbed/a' });
    expect(ok(' a.py\n')).toEqual({ relative: 'a.py', absolute: '/testbed/a.py' });
  });

  it('works with a root that has a trailing slash or hidden parts (the local backend)', () => {
    expect(ok('x/y', '/home/u/.entropo/sb1/repo/')).toEqual({
      relative: 'x/y',
      absolute: '/home/u/.entropo/sb1/repo/x/y',
    });
  });

  it('refuses paths that escape the repository', () => {
    for (const bad of ['..', '../x', 'a/../../x', '/etc/passwd', '/testbed/../etc', '/testbedx/a', '/']) {
      const r = resolveRepoPath(bad, '/testbed');
      expect(r.ok, bad).toBe(false);
      expect(!r.ok && r.message).toBe(
        `The path ${bad} is outside the repository. Use a path under /testbed or relative to it.`,
      );
    }
  });

  it('refuses empty paths and NUL characters', () => {
    expect(resolveRepoPath(' ', '/testbed')).toEqual({ ok: false, message: 'The path is empty.' });
    expect(resolveRepoPath('a\0b', '/testbed').ok).toBe(false);
  });
});

describe('shellQuote', () => {
  it('bash reads back exactly the text', () => {
    for (const text of ["it's", '$(rm -rf x) `y` "z"', '-n', 'a\nb', '']) {
      expect(execFileSync('bash', ['-c', `printf %s ${shellQuote(text)}`]).toString()).toBe(text);
    }
  });
});
