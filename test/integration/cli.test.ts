import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { TASKS_ROOT } from '../../cli/suites';
import { runCli } from '../helpers/cli';
import { FIXTURE_INSTANCES, isolatedHome } from '../helpers/env';

const home = isolatedHome('cli');

const cli = (...args: string[]) => runCli(home, ...args);

describe('entropo CLI input checking (before any work starts)', () => {
  it('config-check names every bad field and exits 2', async () => {
    const file = path.join(home, 'run.yaml');
    fs.writeFileSync(
      file,
      'instances: x.jsonl\ngrading:\n  concurrency: -1\nsandbox:\n  outputLimitBytes: 5\n  colour: red\n',
    );
    const r = await cli('config-check', file);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('field "grading.concurrency"');
    expect(r.stderr).toContain('field "sandbox.outputLimitBytes"');
    expect(r.stderr).toContain('field "sandbox.colour": unknown field');
  });

  it('config-check names the line of a JSON syntax error, and prints defaults for a good file', async () => {
    const bad = path.join(home, 'bad.json');
    fs.writeFileSync(bad, '{\n  "instances": "x.jsonl",\n  "grading": {,\n}\n');
    const r = await cli('config-check', bad);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/bad\.json:line 3/);
    const good = path.join(home, 'good.json');
    fs.writeFileSync(good, '{"instances": "x.jsonl"}');
    const ok = await cli('config-check', good);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout).grading.concurrency).toBe(2);
  });

  /** The problem lines of an `invalid …:` report on stderr. */
  const problemLines = (stderr: string) =>
    stderr
      .split('\n')
      .filter((l) => l.startsWith('  - '))
      .sort();

  it('gives a bad config the same answer from config-check and tasks validate --config, exit 2', async () => {
    const cases: [string, string, RegExp][] = [
      ['empty.yaml', '', /document: the document is empty; a run config is a mapping/],
      ['null.yaml', 'null\n', /document: the document is empty/],
      ['number.yaml', 'grading: 5\n', /field "grading": expected a mapping of fields, got number/],
      ['word.yaml', 'grading: fast\n', /field "grading": expected a mapping of fields, got string/],
      ['list.yaml', '- grading: {}\n', /document: must be a mapping of fields .*, not a list/],
    ];
    for (const [name, text, expected] of cases) {
      const file = path.join(home, name);
      fs.writeFileSync(file, text);
      const check = await cli('config-check', file);
      const validate = await cli(
        'tasks',
        'validate',
        FIXTURE_INSTANCES,
        '--config',
        file,
        '--concurrency',
        '3',
      );
      for (const r of [check, validate]) {
        expect(r.code, `${name}: ${r.stderr}`).toBe(2);
        expect(r.stderr).toMatch(expected);
        expect(r.stderr).not.toMatch(/Cannot read|grading\.0|field "0"|TypeError/);
        expect(r.stderr).not.toContain('Temporal at');
      }
      expect(problemLines(validate.stderr), name).toEqual(problemLines(check.stderr));
    }
  });

  it('config-check accepts a config meant for --config, without instances', async () => {
    const file = path.join(home, 'for-config.yaml');
    fs.writeFileSync(file, 'grading:\n  concurrency: 3\n');
    const r = await cli('config-check', file);
    expect(r.code, r.stderr).toBe(0);
    const config = JSON.parse(r.stdout);
    expect(config.grading).toEqual({ concurrency: 3, testTimeoutSec: 900 });
    expect(config.instances).toBeUndefined();
    expect(r.stderr).toContain('no instances; name them on the command line');
  });

  it('tasks validate refuses a config whose instances the command line contradicts', async () => {
    const file = path.join(home, 'other-instances.yaml');
    fs.writeFileSync(file, 'instances: other.jsonl\ngrading:\n  concurrency: 0\n');
    const r = await cli('tasks', 'validate', FIXTURE_INSTANCES, '--config', file);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      `other-instances.yaml: field "instances": names other.jsonl but the command line names ${FIXTURE_INSTANCES}`,
    );
    expect(r.stderr).toContain('field "grading.concurrency"');
    expect(r.stderr).not.toContain('Temporal at');
  });

  it('tasks validate of a directory that is no suite says what it expected, exit 2', async () => {
    const dir = path.join(home, 'not-a-suite');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'hello\n');
    const r = await cli('tasks', 'validate', dir);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${dir} is a directory without instances.jsonl or manifest.json`);
    expect(r.stderr).not.toContain('EISDIR');
    // A suite whose manifest names an instance file that is not there.
    const suite = path.join(home, 'hollow-suite');
    fs.mkdirSync(suite, { recursive: true });
    fs.copyFileSync(path.join(TASKS_ROOT, 'quickstart', 'manifest.json'), path.join(suite, 'manifest.json'));
    const hollow = await cli('tasks', 'validate', suite);
    expect(hollow.code).toBe(2);
    expect(hollow.stderr).toMatch(/instance file .*instances\.jsonl is missing or not a file/);
  });

  it('tasks validate rejects a broken instance file with file and line, without starting Temporal', async () => {
    const file = path.join(home, 'broken.jsonl');
    fs.writeFileSync(file, '{"instance_id": "a"}\n');
    const r = await cli('tasks', 'validate', file);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('broken.jsonl:line 1: field "repo"');
    expect(r.stderr).not.toContain('Temporal at');
  });
});
