import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CommandResult } from '../../../domain/agent/observations';
import { resolveRepoPath } from '../../../domain/agent/repoPaths';
import { MAX_SEARCH_FILES, searchCommand, searchObservation } from '../../../domain/agent/search';

const ROOT = '/testbed';
let repo: string;

/** Runs the search command with real bash and grep in a scratch repository, as the sandbox would. */
function search(term: string, where = '.'): string {
  const resolved = resolveRepoPath(where, ROOT);
  if (!resolved.ok) throw new Error(resolved.message);
  const run = spawnSync('bash', ['-c', searchCommand(term, resolved.path)], { cwd: repo });
  const result: CommandResult = {
    exitCode: run.status,
    stdout: run.stdout.toString(),
    stderr: run.stderr.toString(),
    timedOut: false,
    stdoutCutBytes: 0,
    stderrCutBytes: 0,
  };
  return searchObservation(term, resolved.path, result, { repoRoot: ROOT });
}

beforeAll(() => {
  repo = fs.mkdtempSync(path.join(os.tmpdir(), 'entropo-search-'));
  const files: Record<string, string> = {
    'a.py': 'def foo():\n    return foo_bar()\n',
    'pkg/b.py': 'x = foo\n',
    'pkg/.hidden.py': 'foo\n',
    '.git/config': 'foo\n',
    '.github/ci.yml': 'foo\n',
    'data.bin': 'foo\0\0\0',
    'regex.txt': 'a.*b\n-n\n',
  };
  for (let i = 0; i < MAX_SEARCH_FILES + 1; i++) files[`many/f${i}.txt`] = 'needle\n';
  for (const [f, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(repo, f)), { recursive: true });
    fs.writeFileSync(path.join(repo, f), content);
  }
});

afterAll(() => fs.rmSync(repo, { recursive: true }));

describe('search', () => {
  it('in a directory: matches per non-hidden, non-binary file, paths as the sandbox sees them', () => {
    expect(search('foo')).toBe(
      [
        'Found 3 matches for "foo" in /testbed:',
        '/testbed/a.py (2 matches)',
        '/testbed/pkg/b.py (1 match)',
        'End of matches for "foo" in /testbed',
      ].join('\n'),
    );
    expect(search('foo', '/testbed/pkg')).toBe(
      'Found 1 match for "foo" in /testbed/pkg:\n/testbed/pkg/b.py (1 match)\nEnd of matches for "foo" in /testbed/pkg',
    );
  });

  it('a hidden directory named explicitly is searched', () => {
    expect(search('foo', '.github')).toContain('/testbed/.github/ci.yml (1 match)');
  });

  it('in a file: the matching lines with their numbers', () => {
    expect(search('foo', 'a.py')).toBe(
      'Matches for "foo" in /testbed/a.py:\n1:def foo():\n2:    return foo_bar()\nEnd of matches for "foo" in /testbed/a.py',
    );
  });

  it('the term is a fixed string, even when it looks like a regex or an option', () => {
    expect(search('a.*b', 'regex.txt')).toContain('1:a.*b');
    expect(search('-n', 'regex.txt')).toContain('2:-n');
    expect(search("it's $(x)")).toBe('No matches found for "it\'s $(x)" in /testbed.');
  });

  it('no matches, a missing path, and a path outside the repository', () => {
    expect(search('zzz')).toBe('No matches found for "zzz" in /testbed.');
    expect(search('zzz', 'a.py')).toBe('No matches found for "zzz" in /testbed/a.py.');
    expect(search('foo', 'nope')).toBe('The path /testbed/nope does not exist.');
    expect(resolveRepoPath('/etc', ROOT).ok).toBe(false);
  });

  it(`over ${MAX_SEARCH_FILES} matching files asks to narrow the search`, () => {
    expect(search('needle')).toBe(
      `More than ${MAX_SEARCH_FILES} files matched "needle" in /testbed. Please narrow your search.`,
    );
  });

  it('a command that failed or timed out says so', () => {
    const where = { relative: '.', absolute: ROOT };
    const base = { stdoutCutBytes: 0, stderrCutBytes: 0 };
    expect(
      searchObservation(
        'x',
        where,
        { ...base, exitCode: null, stdout: '', stderr: '', timedOut: true },
        { repoRoot: ROOT },
      ),
    ).toBe('The search for "x" in /testbed failed: it took too long; search a smaller directory.');
    expect(
      searchObservation(
        'x',
        where,
        { ...base, exitCode: 0, stdout: '@dir\n', stderr: 'grep: a: Permission denied', timedOut: false },
        { repoRoot: ROOT },
      ),
    ).toBe('The search for "x" in /testbed failed: grep: a: Permission denied');
  });
});
