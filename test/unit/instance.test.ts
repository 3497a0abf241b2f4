import { describe, expect, it } from 'vitest';
import {
  filesInPatch,
  parseInstances,
  parseInstancesOrThrow,
  sandboxBackendFor,
  taskImageName,
} from '../../domain/instance';
import { formatProblem } from '../../domain/schemaErrors';

const base = {
  instance_id: 'owner__repo-1',
  repo: 'owner/repo',
  base_commit: 'abc1234',
  patch: 'diff --git a/x.py b/x.py\n',
  test_patch: '',
  problem_statement: 'it breaks',
};

describe('parseInstances', () => {
  it('reads SWE-bench JSONL where test lists are JSON strings, as exported', () => {
    const row = {
      ...base,
      FAIL_TO_PASS: '["t.py::a"]',
      PASS_TO_PASS: '[]',
      version: '1.0',
      environment_setup_commit: 'x',
    };
    const { instances, problems } = parseInstances(`${JSON.stringify(row)}\n`, 'swe.jsonl');
    expect(problems).toEqual([]);
    expect(instances[0]!.FAIL_TO_PASS).toEqual(['t.py::a']);
    expect(instances[0]!.log_parser).toBe('pytest');
  });

  it('reads a JSON array with plain lists', () => {
    const rows = [{ ...base, FAIL_TO_PASS: ['a'], PASS_TO_PASS: ['b'] }];
    expect(parseInstancesOrThrow(JSON.stringify(rows), 'swe.json')[0]!.PASS_TO_PASS).toEqual(['b']);
  });

  it('names the file, line and field of every problem at once', () => {
    const good = JSON.stringify({ ...base, FAIL_TO_PASS: [], PASS_TO_PASS: [] });
    const text = [
      good,
      '{not json',
      JSON.stringify({ ...base, instance_id: 'x2', FAIL_TO_PASS: 'nope', PASS_TO_PASS: [], colour: 'red' }),
      '',
      good,
    ].join('\n');
    const { instances, problems } = parseInstances(text, 'bad.jsonl');
    expect(instances).toHaveLength(1);
    expect(problems).toEqual([
      expect.objectContaining({
        file: 'bad.jsonl',
        line: 2,
        field: '',
        message: expect.stringContaining('not valid JSON'),
      }),
      expect.objectContaining({ line: 3, field: 'FAIL_TO_PASS' }),
      expect.objectContaining({ line: 3, field: 'colour', message: 'unknown field' }),
      expect.objectContaining({ line: 5, field: 'instance_id', message: 'duplicate of line 1' }),
    ]);
    expect(() => parseInstancesOrThrow(text, 'bad.jsonl')).toThrow(
      /bad\.jsonl:line 3: field "colour": unknown field/,
    );
  });

  it('rejects a missing required field and a bad commit hash', () => {
    const { problems } = parseInstances(
      JSON.stringify({ ...base, base_commit: 'main', PASS_TO_PASS: [] }),
      'f.jsonl',
    );
    expect(problems.map((p) => p.field).sort()).toEqual(['FAIL_TO_PASS', 'base_commit']);
  });

  it('says what shape a test list must have and what is wrong with it', () => {
    const problemFor = (FAIL_TO_PASS: unknown) =>
      parseInstances(JSON.stringify({ ...base, FAIL_TO_PASS, PASS_TO_PASS: [] }), 'f.jsonl').problems;
    const expected = /^must be a list of test ids \(strings\), or a JSON string encoding one/;
    for (const [value, detail] of [
      [5, /, not a number$/],
      [{ a: 1 }, /, not an object$/],
      [['a', 2], /; item 2 is a number: 2$/],
      ['[1]', /; item 1 is a number: 1$/],
      ['tests/test_a.py::test_b', /; this string is not JSON: "tests\/test_a\.py::test_b"$/],
      ['{"a": 1}', /; this string encodes an object$/],
    ] as const) {
      const problems = problemFor(value);
      expect(problems).toHaveLength(1);
      expect(problems[0]!.field).toBe('FAIL_TO_PASS');
      expect(problems[0]!.message).toMatch(expected);
      expect(problems[0]!.message).toMatch(detail);
    }
    const missing = parseInstances(JSON.stringify({ ...base, PASS_TO_PASS: [] }), 'f.jsonl').problems;
    expect(missing[0]!.message).toMatch(/^missing; it must be a list of test ids/);
  });

  it('locates problems of a JSON array by the line each element starts on, and its element number', () => {
    const good = { ...base, FAIL_TO_PASS: [], PASS_TO_PASS: [] };
    const text = JSON.stringify([good, { ...good, instance_id: 'b', FAIL_TO_PASS: 7 }, good], null, 2);
    const { problems } = parseInstances(text, 'swe.json');
    const lineOf = (n: number) => text.split('\n').findIndex((l, i) => i > 0 && l === '  {' && --n === 0) + 1;
    expect(problems).toEqual([
      expect.objectContaining({ line: lineOf(2), element: 2, field: 'FAIL_TO_PASS' }),
      expect.objectContaining({
        line: lineOf(3),
        element: 3,
        field: 'instance_id',
        message: 'duplicate of element 1',
      }),
    ]);
    expect(lineOf(2)).toBeGreaterThan(2);
    expect(formatProblem(problems[0]!)).toMatch(
      new RegExp(`^swe\\.json:line ${lineOf(2)} \\(element 2\\): field "FAIL_TO_PASS"`),
    );
    // A one-line export puts every element on line 1: the element number tells them apart.
    const oneLine = parseInstances(
      JSON.stringify([good, { ...good, instance_id: 'c', repo: 5 }]),
      'one.json',
    );
    expect(formatProblem(oneLine.problems[0]!)).toMatch(/^one\.json:line 1 \(element 2\): field "repo"/);
  });

  it('gives the line of a JSON syntax error in an array file, not a character offset', () => {
    const text = '[\n  {"instance_id": "a"},\n  {"instance_id": "b",,}\n]\n';
    const { problems } = parseInstances(text, 'broken.json');
    expect(problems).toEqual([
      expect.objectContaining({
        file: 'broken.json',
        line: 3,
        message: expect.stringContaining('not valid JSON'),
      }),
    ]);
    const truncated = parseInstances('[\n  {"instance_id": "a"},\n  {"instance_id"', 'cut.json').problems;
    expect(truncated[0]!.line).toBe(3);
  });

  it('rejects an empty file', () => {
    expect(parseInstances('\n\n', 'empty.jsonl').problems[0]!.message).toBe('no instances in file');
  });
});

describe('filesInPatch', () => {
  it('lists the files a diff touches, new files included', () => {
    const patch =
      'diff --git a/a.py b/a.py\n--- a/a.py\n+++ b/a.py\ndiff --git a/t/new.py b/t/new.py\nnew file mode 100644\n';
    expect(filesInPatch(patch)).toEqual(['a.py', 't/new.py']);
  });
});

describe('sandbox backend and image of an instance', () => {
  it("follows SWE-bench's image names, or the image the source names", () => {
    expect(taskImageName({ instance_id: 'Django__django-11099' })).toBe(
      'sweb.eval.x86_64.django__django-11099:latest',
    );
    expect(
      taskImageName({ instance_id: 'x', source: { kind: 'docker_image', image: 'namanjain12/r2e:abc' } }),
    ).toBe('namanjain12/r2e:abc');
  });

  it("uses the instance's choice over the run's, and docker for image sources", () => {
    expect(sandboxBackendFor({}, 'local')).toBe('local');
    expect(sandboxBackendFor({}, 'docker')).toBe('docker');
    expect(sandboxBackendFor({ sandbox_backend: 'docker' }, 'local')).toBe('docker');
    expect(
      sandboxBackendFor({ sandbox_backend: 'local', source: { kind: 'git', path: 'r' } }, 'docker'),
    ).toBe('local');
    expect(sandboxBackendFor({ source: { kind: 'docker_image', image: 'i' } }, 'local')).toBe('docker');
  });

  it('rejects an unknown backend on an instance, naming the field', () => {
    const { problems } = parseInstances(
      JSON.stringify({ ...base, FAIL_TO_PASS: [], PASS_TO_PASS: [], sandbox_backend: 'vm' }),
      'i.jsonl',
    );
    expect(problems.map((p) => `${p.line}:${p.field}`)).toEqual(['1:sandbox_backend']);
  });
});
