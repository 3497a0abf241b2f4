import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ArtifactStore } from '../../activities/artifacts';
import { LocalSandboxBackend } from '../../activities/localSandbox';
import { PROJECT_ROOT } from '../../activities/paths';
import { SandboxPool } from '../../activities/sandboxPool';
import { buildSuite } from '../../activities/taskBuilder';
import { parseInstancesOrThrow, type TaskInstance } from '../../domain/instance';
import type { InvalidInputError } from '../../domain/schemaErrors';
import { parseSuiteSpec, type SuiteManifest } from '../../domain/taskSuite';
import { isolatedHome } from '../helpers/env';
import { gradeWith, localHarness } from '../sandbox/suites';

const home = isolatedHome('builder');
const SPEC_FILE = path.join(PROJECT_ROOT, 'test', 'fixtures', 'builder-spec.json');
const spec = parseSuiteSpec(JSON.parse(fs.readFileSync(SPEC_FILE, 'utf8')), SPEC_FILE);
const logs: string[] = [];
let manifest: SuiteManifest;
let instances: TaskInstance[];

async function build(out: string, into: string[], verbose: boolean): Promise<SuiteManifest> {
  return buildSuite(spec, out, (line) => into.push(line), path.dirname(SPEC_FILE), { verbose });
}

beforeAll(async () => {
  manifest = await build(path.join(home, 'a'), logs, true);
  const file = path.join(home, 'a', 'instances.jsonl');
  instances = parseInstancesOrThrow(fs.readFileSync(file, 'utf8'), file).map((i) => ({
    ...i,
    source: { kind: 'git', path: path.join(home, 'a', (i.source as { path: string }).path) },
  }));
});

describe('procedural task builder', () => {
  it('refuses a mutation that breaks no test, and one that breaks a test not calling the mutated code', () => {
    expect(manifest.build!.refused).toEqual({ 'breaks no test': 2, 'breaks unrelated tests': 1 });
    expect(logs.join('\n')).toMatch(
      /refused change_constant in register_answer .*do not call the mutated code: tests\/test_b\.py::test_answer_once_registered/,
    );
    expect(instances.map((i) => i.instance_id)).toEqual([
      expect.stringMatching(/^sharedstate__sharedstate-change-constant-/),
    ]);
  });

  it('writes a SWE-bench instance: the bug at the base commit, failing tests taken out, gold and test patches', () => {
    const [task] = instances;
    expect(task!.FAIL_TO_PASS).toEqual(['tests/test_a.py::test_double']);
    expect(task!.PASS_TO_PASS).toEqual([
      'tests/test_a.py::test_limit_small',
      'tests/test_a.py::test_register_answer',
      'tests/test_b.py::test_answer_once_registered',
    ]);
    const repo = (task!.source as { path: string }).path;
    const show = (file: string) =>
      execFileSync('git', ['show', `${task!.base_commit}:${file}`], { cwd: repo, encoding: 'utf8' });
    expect(show('pkg/a.py')).toContain('return n * 3');
    expect(show('tests/test_a.py')).not.toContain('test_double');
    expect(task!.patch).toContain('-    return n * 3\n+    return n * 2');
    expect(task!.test_patch).toContain('+def test_double():');
    // The issue text shows the failing check and what came back, not the diff.
    expect(task!.problem_statement).toContain('assert a.double(21) == 42');
    expect(task!.problem_statement).toContain('assert 63 == 42');
    expect(task!.problem_statement).not.toContain('n * 3');
    expect(task!.problem_statement).not.toContain('n * 2');
  });

  it('is deterministic: the same spec and seed give the same instances, base commits included', async () => {
    const quiet: string[] = [];
    await build(path.join(home, 'b'), quiet, false);
    // Without --verbose a refused mutation is counted, not logged line by line.
    expect(quiet.join('\n')).not.toMatch(/refused/);
    expect(quiet.join('\n')).toContain(`1 tasks from 1 packages; ${manifest.build!.tried} mutations tried`);
    const a = fs.readFileSync(path.join(home, 'a', 'instances.jsonl'), 'utf8');
    const b = fs.readFileSync(path.join(home, 'b', 'instances.jsonl'), 'utf8');
    expect(b).toBe(a);
  });

  it('makes a valid task: gold resolves, empty does not', async () => {
    const pool = new SandboxPool(new LocalSandboxBackend(path.join(home, 'sandboxes')));
    const harness = localHarness(pool, new ArtifactStore(), instances);
    expect((await gradeWith(harness, instances[0]!, { kind: 'gold' }, 'b-gold')).summary.resolved).toBe(true);
    expect((await gradeWith(harness, instances[0]!, { kind: 'empty' }, 'b-empty')).summary.resolved).toBe(
      false,
    );
  });

  it('names the bad fields of a spec', () => {
    let error: InvalidInputError | undefined;
    try {
      parseSuiteSpec(
        {
          name: 'x',
          seed: 1,
          packages: [{ name: 'p', version: '1', repo: 'bad', sourcePaths: [], testPaths: ['t'], tasks: 1 }],
        },
        's.json',
      );
    } catch (e) {
      error = e as InvalidInputError;
    }
    expect(error!.problems.map((p) => p.field).sort()).toEqual([
      'packages[0].repo',
      'packages[0].sha256',
      'packages[0].sourcePaths',
    ]);
  });
});
