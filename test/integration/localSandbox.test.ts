import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalSandbox, LocalSandboxBackend } from '../../activities/localSandbox';
import { PROJECT_ROOT, venvBin } from '../../activities/paths';
import { FIXTURE_REPO, fixtureInstances, isolatedHome } from '../helpers/env';

const home = isolatedHome('sandbox');
const backend = new LocalSandboxBackend(path.join(home, 'sandboxes'));
const instance = fixtureInstances()[0]!;
const opts = { timeoutSec: 20, outputLimitBytes: 64 * 1024 };
let a: LocalSandbox;
let b: LocalSandbox;

beforeAll(async () => {
  const source = { kind: 'git' as const, path: FIXTURE_REPO };
  a = await backend.create({ sandboxId: 'sbx-a', source, baseCommit: instance.base_commit as string });
  b = await backend.create({ sandboxId: 'sbx-b', source, baseCommit: instance.base_commit as string });
});
afterAll(() => backend.destroyAll());

describe('local bubblewrap sandbox', () => {
  it('runs commands in the repo at the base commit, with no later history reachable', async () => {
    const r = await a.exec('git rev-parse HEAD && git log --all --oneline | wc -l && pwd', opts);
    expect(r.exitCode).toBe(0);
    const [head, commits, cwd] = r.stdout.trim().split('\n');
    expect(head).toBe(instance.base_commit);
    expect(commits).toBe('1');
    expect(cwd).toBe(a.repoDir);
  });

  it('creates a sandbox from a tarball of the repository too', async () => {
    const tarball = path.join(home, 'repo.tar');
    spawnSync('tar', ['-C', FIXTURE_REPO, '-cf', tarball, '.']);
    const t = await backend.create({
      sandboxId: 'sbx-tar',
      source: { kind: 'tarball', path: tarball },
      baseCommit: instance.base_commit as string,
    });
    const r = await t.exec('git rev-parse HEAD; git status --porcelain | wc -l', opts);
    expect(r.stdout.trim().split('\n')).toEqual([instance.base_commit, '0']);
    await backend.destroy('sbx-tar');
    expect(fs.existsSync(t.dir)).toBe(false);
  });

  it('reports exit codes and stderr', async () => {
    const r = await a.exec('echo out; echo err >&2; exit 3', opts);
    expect(r).toMatchObject({ exitCode: 3, stdout: 'out\n', stderr: 'err\n', timedOut: false });
  });

  it('has no network', async () => {
    const r = await a.exec(
      `python3 -c "import socket; s=socket.socket(); s.settimeout(3); s.connect(('1.1.1.1', 80))"`,
      opts,
    );
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/Network is unreachable|Errno 101/);
  });

  it('keeps the host read-only but the repo and /tmp writable', async () => {
    const venv = path.dirname(venvBin()); // a host path that stays visible wherever the project lives
    const r = await a.exec(
      `touch ${venv}/escape 2>&1; echo host=$?; touch /etc/escape 2>/dev/null; echo etc=$?; ` +
        'touch inside && echo repo=ok; touch /tmp/x && echo tmp=ok',
      opts,
    );
    expect(r.stdout).toMatch(/host=1/);
    expect(r.stdout).toMatch(/etc=1/);
    expect(r.stdout).toMatch(/repo=ok/);
    expect(r.stdout).toMatch(/tmp=ok/);
    expect(fs.existsSync(path.join(venv, 'escape'))).toBe(false);
  });

  it("cannot see other sandboxes' files or processes", async () => {
    fs.writeFileSync(path.join(b.repoDir, 'secret-b'), 'b');
    const background = b.exec('sleep 2', opts);
    const r = await a.exec(`ls ${b.repoDir} 2>&1; ls /tmp; ps -e -o comm= | grep -c sleep || true`, opts);
    expect(r.stdout).toMatch(/No such file or directory/);
    expect(r.stdout).not.toContain('secret-b');
    expect(r.stdout.trim().split('\n').at(-1)).toBe('0');
    await background;
  });

  it('kills the whole process tree at the timeout, even a process that ignores SIGTERM', async () => {
    const marker = path.join(a.tmpDir, 'survivor');
    const started = performance.now();
    const r = await a.exec(
      `(trap '' TERM; sleep 3; touch /tmp/survivor) & (setsid bash -c "trap '' TERM; sleep 30") & echo started; wait`,
      { ...opts, timeoutSec: 1 },
    );
    expect(r.timedOut).toBe(true);
    expect(r.exitCode).toBeNull();
    expect(r.stdout).toBe('started\n');
    expect(performance.now() - started).toBeLessThan(5000);
    await new Promise((res) => setTimeout(res, 3000));
    expect(fs.existsSync(marker)).toBe(false);
  });

  it('caps output and says how much was cut', async () => {
    const r = await a.exec('head -c 50000000 /dev/zero | tr "\\0" x', { ...opts, outputLimitBytes: 4096 });
    expect(r.exitCode).toBe(0);
    expect(r.stdoutCutBytes).toBe(50_000_000 - 4096);
    expect(r.stdout).toContain('bytes of output cut; 50000000 bytes in all');
    expect(r.stdout.length).toBeLessThan(4300);
  });

  it('round-trips files and refuses paths outside the repo', async () => {
    await a.writeFile('pkg/new.txt', 'hi\n');
    expect((await a.readFile('pkg/new.txt')).toString()).toBe('hi\n');
    const r = await a.exec('cat pkg/new.txt', opts);
    expect(r.stdout).toBe('hi\n');
    await expect(a.writeFile('../../outside.txt', 'x')).rejects.toThrow(/outside the repository/);
  });

  it('sweeps sandboxes of dead workers on start, keeps live ones', async () => {
    const orphan = path.join(backend.root, 'orphan-1');
    fs.mkdirSync(path.join(orphan, 'repo'), { recursive: true });
    const dead = spawnSync('true').pid!;
    fs.writeFileSync(
      path.join(orphan, 'owner.json'),
      JSON.stringify({ pid: dead, hostname: require('node:os').hostname() }),
    );
    const other = new LocalSandboxBackend(backend.root);
    expect(await other.sweepOrphans()).toEqual(['orphan-1']);
    expect(fs.existsSync(a.dir)).toBe(true); // owned by this live process
  });

  it('says how to install bwrap when it is missing', () => {
    const bin = fs.mkdtempSync(path.join(home, 'nobwrap-'));
    fs.symlinkSync(process.execPath, path.join(bin, 'node'));
    const r = spawnSync(
      process.execPath,
      ['--import', 'tsx', '-e', `require('./activities/localSandbox').assertBwrapAvailable()`],
      { cwd: PROJECT_ROOT, env: { ...process.env, PATH: bin }, encoding: 'utf8' },
    );
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('apt-get install -y bubblewrap');
  });
});
