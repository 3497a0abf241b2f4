import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli';
import { isolatedHome } from '../helpers/env';

/** `entropo run` and `entropo report` refuse bad input before anything starts (no Temporal is reachable here). */

const home = isolatedHome('run-cli');

function config(name: string, text: string): string {
  const file = path.join(home, name);
  fs.writeFileSync(file, text);
  return file;
}

describe('entropo run', () => {
  it('lists every bad field of the run config, with its file, and exits 2', async () => {
    const file = config(
      'bad.yaml',
      [
        'suites: {train: quickstart}',
        'entropo: {mode: ipo, lambda: -1}',
        'tts: {n: 0}',
        'selector: {prefer: longest}',
        'pool: {sampling: {temperature: hot}}',
        'verbose: true',
        '',
      ].join('\n'),
    );
    const { code, stderr } = await runCli(home, 'run', file);
    expect(code).toBe(2);
    for (const field of [
      'suites.test',
      'entropo.mode',
      'entropo.lambda',
      'tts.n',
      'selector.prefer',
      'pool.sampling.temperature',
      'verbose',
    ])
      expect(stderr).toContain(field);
    expect(stderr).toContain(file);
    expect(stderr).not.toContain('embedded Temporal'); // nothing was started
  });

  it('refuses a test suite that is not held out, and a training suite that is, naming each', async () => {
    const file = config('swapped.yaml', 'suites: {train: test, test: quickstart}\n');
    const { code, stderr } = await runCli(home, 'run', file);
    expect(code).toBe(2);
    expect(stderr).toMatch(/suites\.train.*held out/);
    expect(stderr).toMatch(/suites\.test.*not marked held out/);
  });

  it('names a suite that does not exist', async () => {
    const file = config('missing.yaml', 'suites: {train: quickstart, test: no-such-suite}\n');
    const { code, stderr } = await runCli(home, 'run', file);
    expect(code).toBe(2);
    expect(stderr).toMatch(/suites\.test.*no-such-suite/);
  });
});

describe('entropo report', () => {
  it('says a run has no report yet, and exits 2', async () => {
    const { code, stderr } = await runCli(home, 'report', 'never-ran');
    expect(code).toBe(2);
    expect(stderr).toContain('run never-ran has no report yet');
  });
});
