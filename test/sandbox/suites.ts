import { execFileSync, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ArtifactStore } from '../../activities/artifacts';
import { gradeInSandbox } from '../../activities/grading';
import { PROJECT_ROOT } from '../../activities/paths';
import { readWorkingTreeDiff, type Sandbox } from '../../activities/sandboxBackend';
import type { SandboxPool } from '../../activities/sandboxPool';
import type { GradeReport, GradeSummary, PatchChoice } from '../../domain/grading';
import { instanceSchema, type TaskInstance } from '../../domain/instance';
import { type SandboxBackendName, type SandboxLimits, sandboxLimitsSchema } from '../../domain/runConfig';
import { FIXTURE_INSTANCES } from '../helpers/env';

/**
 * One conformance suite and one containment suite, run against every sandbox backend: whatever the backend,
 * an agent's tool calls and a grading must observe the same things.
 */

export interface SandboxHarness {
  backend: SandboxBackendName;
  pool: SandboxPool;
  store: ArtifactStore;
  /** The fixture instances, their sources resolved, as the grading activity reads them. */
  instances: TaskInstance[];
  /** Creates a sandbox holding an instance's repository (default: the first fixture's) at its base commit. */
  create(
    sandboxId: string,
    options?: { limits?: Partial<SandboxLimits>; instance?: TaskInstance },
  ): Promise<Sandbox>;
  /** Makes what `create` needs for an instance that is not a fixture (the docker backend builds its image). */
  prepare?(instance: TaskInstance): Promise<void>;
}

export const OPTS = { timeoutSec: 30, outputLimitBytes: 64 * 1024 };

/** A harness on the local backend over the given instances (their sources resolved). */
export function localHarness(
  pool: SandboxPool,
  store: ArtifactStore,
  instances: TaskInstance[],
): SandboxHarness {
  return {
    backend: 'local',
    pool,
    store,
    instances,
    create: (sandboxId, { limits, instance = instances[0]! } = {}) =>
      pool.create('local', {
        sandboxId,
        instanceId: instance.instance_id,
        source: instance.source,
        baseCommit: instance.base_commit,
        limits: sandboxLimitsSchema.parse(limits ?? {}),
      }),
  };
}

/** Grades one patch in a fresh sandbox through the real activity; returns its summary and report. */
export async function gradeWith(
  harness: SandboxHarness,
  instance: TaskInstance,
  patch: PatchChoice,
  sandboxId: string,
): Promise<{ summary: GradeSummary; report: GradeReport }> {
  await harness.create(sandboxId, { instance });
  const { id: instanceRef } = await harness.store.putJson(instance);
  try {
    const summary = (await new MockActivityEnvironment().run(
      gradeInSandbox,
      { store: harness.store, sandboxes: harness.pool },
      {
        sandboxId,
        instanceId: instance.instance_id,
        instanceRef,
        patch,
        testTimeoutSec: 300,
        commandTimeoutSec: 60,
        outputLimitBytes: 64 * 1024,
      },
    )) as GradeSummary;
    return { summary, report: await harness.store.getJson<GradeReport>(summary.reportId) };
  } finally {
    await harness.pool.destroy(sandboxId);
  }
}

/** The patch of issue 10 (6b): a root conftest.py whose hook turns every failed test report into "passed". */
export const CONFTEST_HOOK_PATCH = `diff --git a/conftest.py b/conftest.py
new file mode 100644
--- /dev/null
+++ b/conftest.py
@@ -0,0 +1,9 @@
+import pytest
+
+
+@pytest.hookimpl(hookwrapper=True)
+def pytest_runtest_makereport(item, call):
+    outcome = yield
+    report = outcome.get_result()
+    if report.failed:
+        report.outcome = "passed"
`;

/** A unified diff turned around: what it adds it removes and the other way round (hunk by hunk). */
export function reversePatch(patch: string): string {
  return patch
    .split('\n')
    .map((line) => {
      const hunk = /^@@ -(\S+) \+(\S+) @@(.*)$/.exec(line);
      if (hunk) return `@@ -${hunk[2]} +${hunk[1]} @@${hunk[3]}`;
      const index = /^index (\w+)\.\.(\w+)(.*)$/.exec(line);
      if (index) return `index ${index[2]}..${index[1]}${index[3]}`;
      if (line.startsWith('--- ') || line.startsWith('+++ ')) return line;
      if (line.startsWith('+')) return `-${line.slice(1)}`;
      if (line.startsWith('-')) return `+${line.slice(1)}`;
      return line;
    })
    .join('\n');
}

export function conformanceSuite(harness: SandboxHarness): void {
  describe(`sandbox conformance: ${harness.backend}`, () => {
    let s: Sandbox;
    const base = () => harness.instances[0]!.base_commit;
    beforeAll(async () => {
      s = await harness.create(`conf-${harness.backend}`);
    });
    afterAll(() => harness.pool.destroy(`conf-${harness.backend}`));

    it('runs commands in the repository at the base commit, with no later history reachable', async () => {
      const r = await s.exec('git rev-parse HEAD && git log --all --oneline | wc -l && pwd', OPTS);
      expect(r.exitCode).toBe(0);
      expect(r.stdout.trim().split('\n')).toEqual([base(), '1', s.repoPath]);
    });

    it('reports exit codes, stdout and stderr apart', async () => {
      const r = await s.exec('echo out; echo err >&2; exit 3', OPTS);
      expect(r).toMatchObject({ exitCode: 3, stdout: 'out\n', stderr: 'err\n', timedOut: false });
    });

    it('feeds stdin to the command', async () => {
      const r = await s.exec('wc -c; cat', { ...OPTS, stdin: 'hello\nworld\n' });
      expect(r.exitCode).toBe(0);
      expect(r.stdout).toBe('12\n');
    });

    it('times out: the command is killed and the result says so', async () => {
      const started = performance.now();
      const r = await s.exec('echo before; sleep 60; echo after', { ...OPTS, timeoutSec: 1 });
      expect(r).toMatchObject({ timedOut: true, exitCode: null, stdout: 'before\n' });
      // Far below the command's own 60 s, however busy the machine: the kill came from the timeout.
      expect(performance.now() - started).toBeLessThan(30_000);
      const next = await s.exec('echo still-usable', OPTS);
      expect(next.stdout).toBe('still-usable\n');
    });

    it('ends a command when its shell exits: what it left running in the background is killed', async () => {
      // The background job would outlive any busy machine's exec latency: the exec returning well before it
      // ends shows the command was not waited for, and its absence afterwards shows it was killed.
      const started = performance.now();
      const r = await s.exec('(sleep 60.75; echo late > late.txt) & echo done', OPTS);
      expect(r).toMatchObject({ exitCode: 0, stdout: 'done\n', timedOut: false });
      expect(performance.now() - started).toBeLessThan(30_000);
      const check = await s.exec(
        'ls late.txt 2>&1; cat /proc/[0-9]*/cmdline 2>/dev/null | tr "\\0" " " | grep -c "60[.]75"',
        OPTS,
      );
      expect(check.stdout).toMatch(/No such file/);
      expect(check.stdout.trim().split('\n').at(-1)).toBe('0');
    });

    it('caps output, keeping head and tail and saying how much was cut', async () => {
      const r = await s.exec('seq 1 200000; seq 1 1000 >&2', { ...OPTS, outputLimitBytes: 4096 });
      expect(r.exitCode).toBe(0);
      const total = Number(spawnSync('bash', ['-c', 'seq 1 200000 | wc -c'], { encoding: 'utf8' }).stdout);
      expect(r.stdoutCutBytes).toBe(total - 4096);
      expect(r.stdout.startsWith('1\n2\n3\n')).toBe(true);
      expect(r.stdout.trimEnd().endsWith('199999\n200000')).toBe(true);
      expect(r.stdout).toContain(`bytes of output cut; ${total} bytes in all`);
      expect(r.stderrCutBytes).toBe(0);
      expect(r.stderr.split('\n')).toHaveLength(1001);
    });

    it('round-trips text and binary files, creates directories, refuses paths outside the repository', async () => {
      await s.writeFile('pkg/deep/new.txt', 'héllo\n');
      expect((await s.readFile('pkg/deep/new.txt')).toString()).toBe('héllo\n');
      expect((await s.exec('cat pkg/deep/new.txt', OPTS)).stdout).toBe('héllo\n');
      const binary = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 7) % 256));
      await s.writeFile('blob.bin', binary);
      expect((await s.readFile('blob.bin')).equals(binary)).toBe(true);
      expect((await s.exec('sha256sum blob.bin', OPTS)).stdout.split(' ')[0]).toBe(
        require('node:crypto').createHash('sha256').update(binary).digest('hex'),
      );
      await s.exec('echo changed > inside-edit.txt', OPTS);
      expect((await s.readFile('inside-edit.txt')).toString()).toBe('changed\n');
      await expect(s.writeFile('../outside.txt', 'x')).rejects.toThrow(/outside the repository/);
      await expect(s.readFile('../../etc/passwd')).rejects.toThrow(/outside the repository/);
      await expect(s.readFile('no/such/file')).rejects.toThrow();
      const tmp = await s.writeTmpFile('note.patch', 'tmp content\n');
      expect((await s.exec(`cat ${tmp}`, OPTS)).stdout).toBe('tmp content\n');
      await s.exec('rm -rf pkg blob.bin inside-edit.txt', OPTS);
    });

    it('reads the working tree diff against the base commit, new files included, index untouched', async () => {
      const tracked = (await s.exec('git ls-files | grep "\\.py$" | head -1', OPTS)).stdout.trim();
      await s.exec(`echo '# edited' >> ${tracked}`, OPTS);
      await s.writeFile('brand_new.py', 'print("new")\n');
      const diff = await readWorkingTreeDiff(s, base(), OPTS);
      expect(diff).toContain(`diff --git a/${tracked} b/${tracked}`);
      expect(diff).toContain('+# edited');
      expect(diff).toContain('diff --git a/brand_new.py b/brand_new.py');
      expect(diff).toContain('new file mode 100644');
      expect(diff).toContain('+print("new")');
      // The repository's own index saw nothing: the new file is still untracked.
      expect((await s.exec('git status --porcelain', OPTS)).stdout).toContain('?? brand_new.py');
      // The diff applies to a clean checkout and reproduces the tree.
      await s.exec('git stash -u -q', OPTS);
      const patchFile = await s.writeTmpFile('roundtrip.patch', diff);
      expect((await s.exec(`git apply ${patchFile}`, OPTS)).exitCode).toBe(0);
      expect(await readWorkingTreeDiff(s, base(), OPTS)).toBe(diff);
      await s.exec('git checkout -q . && git clean -fdq', OPTS);
      expect(await readWorkingTreeDiff(s, base(), OPTS)).toBe('');
    });

    it('grades real instances: the gold patch resolves, the empty patch does not', async () => {
      for (const instance of harness.instances) {
        const gold = await gradeWith(harness, instance, { kind: 'gold' }, `conf-gold-${harness.backend}`);
        expect(gold.summary.resolved, JSON.stringify(gold.report.resolution)).toBe(true);
        expect(gold.summary.appliedWith).toBe('git apply');
        const empty = await gradeWith(harness, instance, { kind: 'empty' }, `conf-empty-${harness.backend}`);
        expect(empty.summary.resolved).toBe(false);
        for (const test of instance.FAIL_TO_PASS) expect(empty.report.statuses[test]).toBe('FAILED');
      }
    });

    it('removes test machinery a patch adds before the tests run: a conftest hook passing every test resolves nothing', async () => {
      const instance = harness.instances[0]!;
      const patchId = (await harness.store.put(CONFTEST_HOOK_PATCH)).id;
      const graded = await gradeWith(
        harness,
        instance,
        { kind: 'model', patchId },
        `conf-conftest-${harness.backend}`,
      );
      expect(graded.summary.resolved).toBe(false);
      expect(graded.report.revertedFiles).toEqual([{ path: 'conftest.py', action: 'removed' }]);
      for (const test of instance.FAIL_TO_PASS) expect(graded.report.statuses[test]).toBe('FAILED');
    });

    it('grades a patch that applies only in reverse or only in part unresolved, and says which', async () => {
      const instance = harness.instances[0]!;
      const grade = async (patch: string, id: string) =>
        gradeWith(harness, instance, { kind: 'model', patchId: (await harness.store.put(patch)).id }, id);
      // The gold patch reversed: `patch` alone would "assume -R" and apply the fix.
      const reversed = await grade(reversePatch(instance.patch), `conf-reversed-${harness.backend}`);
      expect(reversed.summary).toMatchObject({
        resolved: false,
        appliedWith: null,
        reason: 'patch applies only in reverse (it undoes changes the code already has)',
      });
      expect(reversed.report.applyAttempts.map((a) => [a.method, a.exitCode !== 0])).toEqual([
        ['git apply', true],
        ['git apply --reject', true],
        ['patch --fuzz=5', true],
      ]);
      expect(reversed.report.testLogId).toBeNull();
      // The gold patch plus a hunk that fits nowhere: its first hunk applies, the whole does not.
      const partial = await grade(
        `${instance.patch}@@ -400,3 +400,3 @@\n no such line a\n-no such line b\n+replacement\n no such line c\n`,
        `conf-partial-${harness.backend}`,
      );
      expect(partial.summary).toMatchObject({
        resolved: false,
        appliedWith: null,
        reason: 'patch applies only in part (1 of 2 hunks do not apply)',
      });
    });
  });
}

export function containmentSuite(harness: SandboxHarness): void {
  describe(`sandbox containment: ${harness.backend}`, () => {
    const limits = sandboxLimitsSchema.parse({ memoryMb: 256, pids: 128, cpus: 1 });
    let a: Sandbox;
    let b: Sandbox;
    beforeAll(async () => {
      a = await harness.create(`cont-a-${harness.backend}`, { limits });
      b = await harness.create(`cont-b-${harness.backend}`, { limits });
    });
    afterAll(async () => {
      await harness.pool.destroy(`cont-a-${harness.backend}`);
      await harness.pool.destroy(`cont-b-${harness.backend}`);
    });

    it('has no network: connecting out fails', async () => {
      const r = await a.exec(
        `python3 -c "import socket; s=socket.socket(); s.settimeout(3); s.connect(('1.1.1.1', 80))"`,
        OPTS,
      );
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toMatch(/Network is unreachable|Errno 101/);
    });

    it('cannot write outside the repository and /tmp', async () => {
      const r = await a.exec(
        'for d in /etc /usr/lib /opt /root /; do touch $d/entropo-escape 2>/dev/null && echo "wrote $d"; done; ' +
          'touch inside && echo repo=ok; touch /tmp/x && echo tmp=ok',
        OPTS,
      );
      expect(r.stdout).not.toContain('wrote');
      expect(r.stdout).toContain('repo=ok');
      expect(r.stdout).toContain('tmp=ok');
      await a.exec('rm -f inside', OPTS);
    });

    it('stops a fork bomb at the process limit, and the sandbox and the worker go on', async () => {
      const started = performance.now();
      const r = await a.exec('bomb() { bomb | bomb & }; bomb; sleep 120', { ...OPTS, timeoutSec: 4 });
      expect(r.timedOut).toBe(true);
      expect(r.exitCode).toBeNull();
      expect(performance.now() - started).toBeLessThan(60_000); // the timeout, not the command's own end
      // Every process the bomb made is gone, and the sandbox still runs commands.
      const after = await a.exec('ls -d /proc/[0-9]* | wc -l', OPTS);
      expect(after.exitCode).toBe(0);
      expect(Number(after.stdout.trim())).toBeLessThan(8);
      // The worker's own host can still start processes.
      expect(spawnSync('true').status).toBe(0);
    });

    it('stops a memory hog at the memory limit; the observation says the command was killed', async () => {
      const r = await a.exec(
        `python3 -c "x = bytearray(${limits.memoryMb * 4} * 1024 * 1024); print('allocated')"`,
        OPTS,
      );
      expect(r.stdout).not.toContain('allocated');
      // The kernel's OOM killer (SIGKILL → 137) where cgroups apply; without them the rlimit → MemoryError.
      expect(r.exitCode === 137 || /MemoryError/.test(r.stderr), `exit ${r.exitCode}: ${r.stderr}`).toBe(
        true,
      );
      expect((await a.exec('echo alive', OPTS)).stdout).toBe('alive\n');
    });

    it('caps a command printing gigabytes without holding them in memory', async () => {
      const rssBefore = process.memoryUsage().rss;
      const r = await a.exec('head -c 2000000000 /dev/zero | tr "\\0" x', {
        ...OPTS,
        timeoutSec: 120,
        outputLimitBytes: 8192,
      });
      expect(r.exitCode).toBe(0);
      expect(r.stdoutCutBytes).toBe(2_000_000_000 - 8192);
      expect(r.stdout).toContain('bytes of output cut; 2000000000 bytes in all');
      expect(r.stdout.length).toBeLessThan(8500);
      expect(process.memoryUsage().rss - rssBefore).toBeLessThan(512 * 1024 * 1024);
    });

    it('kills at the timeout a command that ignores SIGTERM, with its detached children', async () => {
      const started = performance.now();
      const r = await a.exec(
        `(trap '' TERM; sleep 3.25; touch /tmp/survivor) & (setsid bash -c "trap '' TERM; sleep 60.5") & echo started; wait`,
        { ...OPTS, timeoutSec: 1 },
      );
      expect(r).toMatchObject({ timedOut: true, exitCode: null, stdout: 'started\n' });
      expect(performance.now() - started).toBeLessThan(30_000);
      await new Promise((res) => setTimeout(res, 3000));
      const check = await a.exec(
        'ls /tmp/survivor 2>&1; cat /proc/[0-9]*/cmdline 2>/dev/null | tr "\\0" " " | grep -cE "sleep (60[.]5|3[.]25)"',
        OPTS,
      );
      expect(check.stdout).toMatch(/No such file/);
      expect(check.stdout.trim().split('\n').at(-1)).toBe('0');
    });

    it("cannot see other sandboxes' files or processes", async () => {
      await b.writeFile('secret-b.txt', 'b');
      const countMine = 'cat /proc/[0-9]*/cmdline 2>/dev/null | tr "\\0" " " | grep -c "6[.]4321"';
      // b sees its own process (so the check can find one)…
      const inB = b.exec(`sleep 6.4321 & sleep 0.5; ${countMine}; kill %1`, OPTS);
      await new Promise((res) => setTimeout(res, 250));
      // …a sees neither it nor b's file.
      const r = await a.exec(`ls ${hostRepoPath(b)}/secret-b.txt 2>&1; ${countMine}`, OPTS);
      expect(r.stdout).toMatch(/No such file or directory/);
      expect(r.stdout.trim().split('\n').at(-1)).toBe('0');
      expect((await inB).stdout.trim()).toBe('1');
    });

    it("reads none of the host's secrets, while the repository, python, pytest and git work", async () => {
      // Canaries where a sandbox must not look: the project checkout, beside the task's instance file, the
      // worker's home, and another sandbox's repository.
      const token = `entropo-canary-${randomUUID()}`;
      const planted = [
        path.join(PROJECT_ROOT, `${token}.env`),
        path.join(path.dirname(FIXTURE_INSTANCES), `${token}.jsonl`),
        path.join(os.homedir(), `${token}.key`),
      ];
      try {
        for (const file of planted) fs.writeFileSync(file, `${token}\n`);
        await b.writeFile(`${token}.txt`, `${token}\n`);
        const otherRepo = path.join(hostRepoPath(b), `${token}.txt`);
        const r = await a.exec(
          `for f in ${[...planted, otherRepo, FIXTURE_INSTANCES].join(' ')}; do cat "$f" 2>/dev/null && echo "READ $f"; done; ` +
            // Not at a path we guessed either: no file of that name anywhere the sandbox can see.
            `find / -path /proc -prune -o -name '${token}*' -print 2>/dev/null; ` +
            'git status --porcelain | wc -l; git log --oneline | wc -l; ' +
            'python -c "import sys; print(sys.version_info[0])"; python -m pytest --version 2>&1 | head -1',
          { ...OPTS, timeoutSec: 300 },
        );
        expect(r.stdout).not.toContain(token);
        expect(r.stdout).not.toContain('READ');
        expect(r.stdout).not.toContain('"patch"');
        const [dirty, commits, python, pytest] = r.stdout.trim().split('\n');
        expect(dirty).toBe('0');
        expect(Number(commits)).toBeGreaterThan(0);
        expect(python).toBe('3');
        expect(pytest).toMatch(/^pytest \d/);
        if (harness.backend === 'local') {
          // In a container, /etc/shadow is the image's own file and proves nothing; here it is the host's.
          expect((await a.exec('cat /etc/shadow 2>&1', OPTS)).stdout).not.toMatch(/^root:/m);
        }
      } finally {
        for (const file of planted) fs.rmSync(file, { force: true });
      }
    });

    it('runs commands as an unprivileged user, also as seen from the host', async () => {
      const marker = `4.${String(Math.floor(Math.random() * 1e6)).padStart(6, '0')}1`; // seconds, unique
      const inside = a.exec(`id -u; sleep ${marker}`, OPTS);
      // The sandbox's processes, found from the host's /proc where the host can see them (the local
      // backend always; docker when the engine runs on this kernel).
      let hostUids: string[] = [];
      for (let i = 0; i < 100 && hostUids.length === 0; i++) {
        await new Promise((res) => setTimeout(res, 100));
        hostUids = hostProcessUids(`sleep ${marker}`);
      }
      const r = await inside;
      expect(Number(r.stdout.trim().split('\n')[0])).not.toBe(0);
      // Seen from the host: always for the local backend; for docker when its engine runs on this kernel.
      if (harness.backend === 'local' || hostProcessUids('dockerd', true).length > 0) {
        expect(hostUids.length, 'the sandbox process found from the host').toBeGreaterThan(0);
      }
      for (const uids of hostUids)
        expect(uids, 'real, effective, saved and fs uid on the host').not.toMatch(/\b0\b/);
    });
  });
}

/**
 * The Uid lines of the host's processes whose command line is `cmdline` (arguments joined by spaces), or
 * with `byName`, whose program name is `cmdline`.
 */
function hostProcessUids(cmdline: string, byName = false): string[] {
  const uids: string[] = [];
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = byName
        ? fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim()
        : fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
      if (cmd !== cmdline) continue;
      const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
      uids.push(status.match(/^Uid:\s*(.*)$/m)![1]!.trim());
    } catch {
      // gone meanwhile
    }
  }
  return uids;
}

/**
 * The instances the repository-history suite runs on: the first task of the bundled quickstart suite and a
 * throwaway repository (made in `dir`) whose fix comes after the base commit, as in a real project.
 */
export function historyInstances(dir: string): TaskInstance[] {
  const suite = path.join(PROJECT_ROOT, 'tasks', 'quickstart', 'instances.jsonl');
  const first = instanceSchema.parse(JSON.parse(fs.readFileSync(suite, 'utf8').split('\n')[0]!));
  const source = {
    kind: 'git' as const,
    path: path.resolve(path.dirname(suite), (first.source as { path: string }).path),
  };
  fs.mkdirSync(dir, { recursive: true });
  return [{ ...first, source }, repositoryWithLaterFix(dir)];
}

/** A throwaway git repository whose fix comes after the base commit, as in a real project's history. */
export function repositoryWithLaterFix(dir: string): TaskInstance {
  const git = (...args: string[]) =>
    execFileSync('git', args, {
      cwd: dir,
      encoding: 'utf8',
      env: {
        ...process.env,
        GIT_AUTHOR_NAME: 't',
        GIT_AUTHOR_EMAIL: 't@t',
        GIT_COMMITTER_NAME: 't',
        GIT_COMMITTER_EMAIL: 't@t',
        // Fixed dates: the same commits on every run (and so one docker image, built once).
        GIT_AUTHOR_DATE: '2024-01-01T00:00:00Z',
        GIT_COMMITTER_DATE: '2024-01-01T00:00:00Z',
        GIT_CONFIG_NOSYSTEM: '1',
        HOME: dir,
      },
    }).trim();
  fs.mkdirSync(path.join(dir, 'calc'), { recursive: true });
  git('init', '--quiet', '--initial-branch=main');
  fs.writeFileSync(path.join(dir, 'calc', '__init__.py'), 'def add(a, b):\n    return a + b\n');
  fs.writeFileSync(
    path.join(dir, 'test_calc.py'),
    'from calc import add\n\ndef test_add():\n    assert add(2, 2) == 4\n',
  );
  git('add', '-A');
  git('commit', '--quiet', '-m', 'first');
  fs.writeFileSync(path.join(dir, 'calc', '__init__.py'), 'def add(a, b):\n    return a - b  # bug\n');
  git('commit', '--quiet', '-am', 'the bug');
  const base = git('rev-parse', 'HEAD');
  fs.writeFileSync(path.join(dir, 'calc', '__init__.py'), 'def add(a, b):\n    return a + b  # the fix\n');
  git('commit', '--quiet', '-am', 'THE FIX');
  const patch = `${git('diff', 'HEAD~1', 'HEAD')}\n`;
  // More places a fix can hide: a tag, another branch, a stash, a dangling commit.
  git('tag', 'v1.0');
  git('branch', 'later');
  fs.writeFileSync(path.join(dir, 'calc', 'extra.py'), 'STASHED = 1\n');
  git('add', '-A');
  git('stash', '--quiet');
  git('checkout', '--quiet', '--detach', base);
  return {
    instance_id: 'entropo-test-later-fix',
    repo: 'local/calc',
    base_commit: base,
    patch,
    test_patch: '',
    problem_statement: 'add subtracts',
    FAIL_TO_PASS: ['test_calc.py::test_add'],
    PASS_TO_PASS: [],
    source: { kind: 'git', path: dir },
    test_command: 'python -m pytest -rA',
    log_parser: 'pytest',
  } as unknown as TaskInstance;
}

/**
 * The id of the blob a gold patch gives its (first) file: the answer, which must not be in the sandbox.
 * Computed from a full clone of the source at the base commit, with the patch applied.
 */
export function fixedBlob(instance: TaskInstance): { blob: string; file: string } {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'entropo-fixed-'));
  try {
    const source = instance.source as { path: string };
    execFileSync('git', ['clone', '--quiet', '--no-checkout', source.path, work]);
    execFileSync('git', ['checkout', '--quiet', '--detach', instance.base_commit], { cwd: work });
    fs.writeFileSync(path.join(work, '.gold.patch'), instance.patch);
    execFileSync('git', ['apply', '.gold.patch'], { cwd: work });
    const file = instance.patch.match(/^\+\+\+ b\/(.+)$/m)![1]!;
    return { blob: execFileSync('git', ['hash-object', file], { cwd: work, encoding: 'utf8' }).trim(), file };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/**
 * A sandbox's repository holds only what is reachable from the base commit: the fix (a later commit, a
 * branch, a tag, a stash) is not in its git objects, while the history up to the base is.
 */
export function repositoryHistorySuite(harness: SandboxHarness, instances: TaskInstance[]): void {
  describe(`sandbox repository history: ${harness.backend}`, () => {
    it('holds only the objects reachable from the base commit: not the fix, but the history up to the base', async () => {
      for (const instance of instances) {
        const { blob, file } = fixedBlob(instance);
        const source = (instance.source as { path: string }).path;
        // The fix is in the source repository: otherwise this test would prove nothing.
        expect(
          spawnSync('git', ['cat-file', '-e', blob], { cwd: source }).status,
          `${blob} in ${source}`,
        ).toBe(0);
        const history = execFileSync('git', ['log', '--format=%H', instance.base_commit], {
          cwd: source,
          encoding: 'utf8',
        });
        await harness.prepare?.(instance);
        const id = `history-${harness.backend}`;
        const s = await harness.create(id, { instance });
        try {
          const r = await s.exec(
            'git cat-file --batch-all-objects --batch-check | wc -l; git rev-list --objects HEAD | wc -l; ' +
              `git cat-file -e ${blob} 2>/dev/null && echo FIX-PRESENT; ` +
              'git for-each-ref | wc -l; git stash list | wc -l; ' +
              'ls .git/ORIG_HEAD .git/FETCH_HEAD .git/logs .git/refs/stash 2>/dev/null | wc -l; ' +
              `git rev-parse HEAD:${file}; echo; git log --format=%H`,
            OPTS,
          );
          expect(r.exitCode, r.stderr).toBe(0);
          const [all, reachable, ...rest] = r.stdout.trim().split('\n');
          expect(Number(all)).toBeGreaterThan(0);
          expect(all, 'objects in the store vs reachable from HEAD').toBe(reachable);
          expect(r.stdout).not.toContain('FIX-PRESENT');
          expect(rest.slice(0, 3)).toEqual(['0', '0', '0']);
          expect(rest[3]).not.toBe(blob); // the base's own version of the file is there, not the fix's
          expect(rest.slice(5).join('\n')).toBe(history.trim());
        } finally {
          await harness.pool.destroy(id);
        }
      }
    });
  });
}

/** Where a sandbox's repository is on the host (local) or in its container (docker): another sandbox's view. */
function hostRepoPath(sandbox: Sandbox): string {
  return 'repoDir' in sandbox ? (sandbox as { repoDir: string }).repoDir : sandbox.repoPath;
}
