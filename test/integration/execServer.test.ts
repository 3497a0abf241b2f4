import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DockerSandboxBackend } from '../../activities/dockerSandbox';
import { LocalSandboxBackend } from '../../activities/localSandbox';
import type { Sandbox, SandboxBackend } from '../../activities/sandboxBackend';
import { instanceSchema, taskImageName } from '../../domain/instance';
import { sandboxLimitsSchema } from '../../domain/runConfig';
import { buildTaskImage } from '../../infra/buildImages';
import { dockerOrExplain } from '../helpers/docker';
import { fixtureInstances, isolatedHome } from '../helpers/env';
import { OPTS } from '../sandbox/suites';

/**
 * The exec server inside each sandbox (activities/execServer.py): every command of a sandbox is forked by
 * one long-lived process, which comes back when it dies. The conformance and containment suites (run
 * through it, unchanged) hold the isolation, limit, timeout and output guarantees; this file shows the
 * server is what runs the commands, and what happens when it is gone.
 */

const home = isolatedHome('exec-server');
const instance = instanceSchema.parse(fixtureInstances()[0]);

/** The command's parent is the exec server: its command line is the server's script. */
const SERVER_DOC = 'exec server: one long-lived process';
/** Matches the server's command line, not its own (a command's text is in its shell's command line). */
const SERVER_PATTERN = 'exec serve[r]: one long-lived process';
/** Prints which process the command's parent is (pid and start time), and 1 if it is an exec server. */
const PARENT = `echo $PPID-$(cut -d" " -f22 /proc/$PPID/stat); tr "\\0" " " < /proc/$PPID/cmdline | grep -c "${SERVER_PATTERN}"`;

/** Host pids of processes whose command line contains `needle` (the local backend's are visible here). */
function hostPids(needle: string): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(needle)) pids.push(Number(entry));
    } catch {
      // gone
    }
  }
  return pids;
}

function suite(
  backendName: 'local' | 'docker',
  makeBackend: (execServer: boolean) => SandboxBackend,
  killServer: (sandbox: Sandbox) => Promise<void>,
) {
  describe(`exec server: ${backendName}`, () => {
    const backends = { on: makeBackend(true), off: makeBackend(false) };
    const sandboxes: Partial<Record<'on' | 'off', Sandbox>> = {};
    beforeAll(async () => {
      for (const mode of ['on', 'off'] as const) {
        sandboxes[mode] = await backends[mode].create({
          sandboxId: `exec-server-${backendName}-${mode}`,
          instanceId: instance.instance_id,
          source: instance.source,
          baseCommit: instance.base_commit,
          image: taskImageName(instance),
          limits: sandboxLimitsSchema.parse({ memoryMb: 512, pids: 128 }),
        });
      }
    });
    afterAll(async () => {
      await backends.on.destroyAll();
      await backends.off.destroyAll();
    });

    it('runs every command of a sandbox from the same long-lived process', async () => {
      const s = sandboxes.on!;
      const parents = new Set<string>();
      for (let i = 0; i < 5; i++) {
        const r = await s.exec(PARENT, OPTS);
        expect(r.exitCode, r.stderr).toBe(0);
        const [ppid, isServer] = r.stdout.trim().split('\n');
        expect(isServer).toBe('1');
        parents.add(ppid!);
      }
      expect(parents.size).toBe(1);
      // Without it, a command's parent is not a server (the check itself can fail).
      const off = await sandboxes.off!.exec(PARENT, OPTS);
      expect(off.stdout.trim().split('\n')[1]).toBe('0');
    });

    it('gives the same results with and without the server: exit codes, output, stdin, state kept in the repository', async () => {
      const commands = [
        { command: 'echo out; echo err >&2; exit 7' },
        { command: 'wc -c; tr a-z A-Z', stdin: 'binary\0and text\n' },
        { command: 'echo kept > kept.txt && git status --porcelain' },
        { command: 'cat kept.txt; rm kept.txt; pwd; id -u' },
      ];
      for (const { command, stdin } of commands) {
        const [on, off] = await Promise.all(
          (['on', 'off'] as const).map((m) => sandboxes[m]!.exec(command, { ...OPTS, stdin })),
        );
        expect({ ...on, durationMs: 0 }).toEqual({ ...off, durationMs: 0 });
      }
    });

    it('times out and aborts with and without the server, and the sandbox goes on', async () => {
      const serverBefore = (await sandboxes.on!.exec(PARENT, OPTS)).stdout;
      for (const mode of ['on', 'off'] as const) {
        const s = sandboxes[mode]!;
        const timedOut = await s.exec('echo before; sleep 120; echo after', { ...OPTS, timeoutSec: 1 });
        expect(timedOut, mode).toMatchObject({ timedOut: true, exitCode: null, stdout: 'before\n' });
        const controller = new AbortController();
        controller.abort();
        const aborted = await s.exec('sleep 120; echo after', {
          ...OPTS,
          timeoutSec: 600,
          signal: controller.signal,
        });
        expect(aborted, mode).toMatchObject({ timedOut: false, exitCode: null, stdout: '' });
        expect((await s.exec('echo next', OPTS)).stdout, mode).toBe('next\n');
      }
      // The server itself answered both kills (the same server runs on; a kill it missed would have ended
      // with the server destroyed after its grace period).
      expect((await sandboxes.on!.exec(PARENT, OPTS)).stdout).toBe(serverBefore);
    });

    it('comes back when the server dies: the command in flight reads as killed, the next one runs', async () => {
      const s = sandboxes.on!;
      const first = (await s.exec(PARENT, OPTS)).stdout.split('\n')[0];
      const inFlight = s.exec('echo started; sleep 120; echo never', { ...OPTS, timeoutSec: 600 });
      await new Promise((r) => setTimeout(r, 500));
      await killServer(s);
      const killed = await inFlight;
      expect(killed.exitCode).toBeNull();
      expect(killed.stdout).not.toContain('never');
      const next = await s.exec(PARENT, OPTS);
      expect(next.exitCode, next.stderr).toBe(0);
      const [ppid, isServer] = next.stdout.trim().split('\n');
      expect(isServer).toBe('1');
      expect(ppid, 'a new server (pid and start time)').not.toBe(first);
      // What the dead server's command left running is gone too (docker: the new server found it by the
      // mark in its environment; local: it died with its namespace).
      const left = await s.exec(
        'cat /proc/[0-9]*/cmdline 2>/dev/null | tr "\\0" " " | grep -c "sleep 12[0]"',
        OPTS,
      );
      expect(left.stdout.trim()).toBe('0');
    });
  });
}

suite(
  'local',
  (execServer) => new LocalSandboxBackend(path.join(home, 'sandboxes'), () => {}, true, [], execServer),
  async (sandbox) => {
    // From the host: the bwrap started for this sandbox (its repository in the command line), and below
    // it, the namespace's init and then the server, which is killed as the OOM killer would.
    const [outer, ...others] = hostPids(SERVER_DOC).filter((pid) =>
      fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(`/${sandbox.id}/repo`),
    );
    const children = (pid: number) =>
      fs
        .readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
        .trim()
        .split(' ')
        .filter(Boolean)
        .map(Number);
    const init = children(outer!).find((pid) => others.includes(pid));
    const server = children(init!)[0];
    expect(fs.readFileSync(`/proc/${server}/cmdline`, 'utf8')).toContain('python');
    process.kill(server!, 'SIGKILL');
  },
);

if (dockerOrExplain('exec server on docker')) {
  beforeAll(async () => {
    await buildTaskImage(instance, { log: () => {} });
  });
  suite(
    'docker',
    (execServer) => new DockerSandboxBackend({ execServer, log: () => {} }),
    async (sandbox) => {
      // From inside, as the container's user (whose processes root there, without capabilities, may not
      // kill): the server is the python whose command line is the server's script.
      const container = `entropo-${sandbox.id}`;
      const r = spawnSync(
        'docker',
        [
          'exec',
          container,
          'bash',
          '-c',
          `for p in /proc/[0-9]*; do tr "\\0" " " < $p/cmdline 2>/dev/null | grep -q "${SERVER_PATTERN}" && kill -9 \${p#/proc/}; done; true`,
        ],
        { encoding: 'utf8' },
      );
      expect(r.status, r.stderr).toBe(0);
    },
  );
}
