import { execFile, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { CappedOutput } from '../domain/cappedOutput';
import type { InstanceSource } from '../domain/instance';
import { entropoHome, sandboxesDir, venvBin } from './paths';

/**
 * The local sandbox backend: bubblewrap (`bwrap`) over a per-sandbox copy of the task repository.
 * Inside: the host filesystem read-only, the repository and a private /tmp writable, no network, its own
 * pid namespace (so a timeout kills every process the command started), other sandboxes invisible.
 */

const run = promisify(execFile);

export interface ExecOptions {
  timeoutSec: number;
  outputLimitBytes: number;
  /** Text fed to the command's stdin. */
  stdin?: string;
  signal?: AbortSignal;
}

export interface ExecResult {
  /** Null when the command was killed (timeout or cancellation). */
  exitCode: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  durationMs: number;
  /** Bytes cut from the middle of stdout / stderr by the output cap. */
  stdoutCutBytes: number;
  stderrCutBytes: number;
}

export class BwrapMissingError extends Error {
  override name = 'BwrapMissingError';
  constructor() {
    super(
      'bubblewrap (bwrap) is not installed, and the local sandbox needs it. Install it with ' +
        '`apt-get install -y bubblewrap` (Debian/Ubuntu; `bash infra/setup.sh` does this when run as root).',
    );
  }
}

let bwrapChecked = false;
export function assertBwrapAvailable(): void {
  if (bwrapChecked) return;
  const probe = spawnSync('bwrap', ['--version'], { stdio: 'ignore' });
  if (probe.error || probe.status !== 0) throw new BwrapMissingError();
  bwrapChecked = true;
}

interface OwnerRecord {
  pid: number;
  hostname: string;
  createdAt: string;
}

export class LocalSandbox {
  readonly repoDir: string;
  readonly tmpDir: string;

  constructor(
    readonly id: string,
    readonly dir: string,
  ) {
    this.repoDir = path.join(dir, 'repo');
    this.tmpDir = path.join(dir, 'tmp');
  }

  private bwrapArgs(): string[] {
    const env: Record<string, string> = {
      PATH: `${venvBin()}:/usr/local/bin:/usr/bin:/bin`,
      HOME: '/tmp',
      TMPDIR: '/tmp',
      LANG: 'C.UTF-8',
      TERM: 'dumb',
      PYTHONDONTWRITEBYTECODE: '1',
      GIT_CONFIG_NOSYSTEM: '1',
    };
    // biome-ignore format: bwrap's arguments read best as option/value pairs
    return [
      '--ro-bind', '/', '/',
      '--dev', '/dev',
      '--proc', '/proc',
      '--bind', this.tmpDir, '/tmp',
      // The private /tmp would hide a project checked out under /tmp: keep its python env visible.
      '--ro-bind-try', path.dirname(venvBin()), path.dirname(venvBin()),
      // Hide our own state (artifacts, other sandboxes), then expose this sandbox's repository. Order
      // matters: later mounts go on top, and the repository may live under /tmp.
      '--tmpfs', entropoHome(),
      '--bind', this.repoDir, this.repoDir,
      '--unshare-net', '--unshare-pid', '--unshare-ipc', '--unshare-uts', '--unshare-cgroup-try',
      '--hostname', 'sandbox',
      '--die-with-parent', '--new-session',
      '--chdir', this.repoDir,
      '--clearenv',
      ...Object.entries(env).flatMap(([k, v]) => ['--setenv', k, v]),
      '--',
    ];
  }

  /** Runs a bash command in the repository root inside the sandbox. Never throws for the command's own failure. */
  exec(command: string, options: ExecOptions): Promise<ExecResult> {
    const started = performance.now();
    const stdout = new CappedOutput(options.outputLimitBytes);
    const stderr = new CappedOutput(options.outputLimitBytes);
    return new Promise<ExecResult>((resolve, reject) => {
      // detached: bwrap leads its own process group, which we kill as a whole on timeout. bwrap's pid-1
      // inside the namespace dies with it (--die-with-parent), taking every process in the sandbox along.
      const child = spawn('bwrap', [...this.bwrapArgs(), 'bash', '-c', command], {
        detached: true,
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let timedOut = false;
      let settled = false;
      const kill = () => {
        if (child.pid !== undefined) {
          try {
            process.kill(-child.pid, 'SIGKILL');
          } catch {
            // already gone
          }
        }
      };
      const timer = setTimeout(() => {
        timedOut = true;
        kill();
      }, options.timeoutSec * 1000);
      const onAbort = () => kill();
      options.signal?.addEventListener('abort', onAbort, { once: true });
      child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
      child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
      child.stdin.on('error', () => {}); // the command may exit without reading its stdin
      child.stdin.end(options.stdin ?? '');
      child.on('error', (err) => {
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        if (settled) return;
        settled = true;
        reject((err as NodeJS.ErrnoException).code === 'ENOENT' ? new BwrapMissingError() : err);
      });
      child.on('close', (code) => {
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        if (settled) return;
        settled = true;
        const killed = timedOut || options.signal?.aborted === true;
        resolve({
          exitCode: killed ? null : code,
          stdout: stdout.text(),
          stderr: stderr.text(),
          timedOut,
          durationMs: Math.round(performance.now() - started),
          stdoutCutBytes: stdout.cutBytes,
          stderrCutBytes: stderr.cutBytes,
        });
      });
    });
  }

  /** Resolves a repository-relative path, refusing anything that escapes the repository. */
  async resolveInRepo(relative: string): Promise<string> {
    const target = path.resolve(this.repoDir, relative);
    const real = await fs.realpath(path.dirname(target)).catch(() => path.dirname(target));
    if (!`${real}${path.sep}`.startsWith(`${this.repoDir}${path.sep}`) && real !== this.repoDir) {
      throw new Error(`path ${JSON.stringify(relative)} is outside the repository`);
    }
    return target;
  }

  async writeFile(relative: string, content: string | Buffer): Promise<void> {
    const target = await this.resolveInRepo(relative);
    await fs.mkdir(path.dirname(target), { recursive: true });
    await fs.writeFile(target, content);
  }

  async readFile(relative: string): Promise<Buffer> {
    return fs.readFile(await this.resolveInRepo(relative));
  }

  /** Puts a file in the sandbox's private /tmp (e.g. a patch to apply); returns its path inside the sandbox. */
  async writeTmpFile(name: string, content: string | Buffer): Promise<string> {
    if (name.includes('/') || name.startsWith('.'))
      throw new Error(`bad tmp file name ${JSON.stringify(name)}`);
    await fs.writeFile(path.join(this.tmpDir, name), content);
    return `/tmp/${name}`;
  }
}

export interface CreateSandboxRequest {
  sandboxId: string;
  source: InstanceSource;
  baseCommit: string;
}

/** Creates, finds and cleans up local sandboxes on this host. */
export class LocalSandboxBackend {
  private readonly live = new Map<string, LocalSandbox>();

  constructor(readonly root: string = sandboxesDir()) {}

  get(sandboxId: string): LocalSandbox {
    const sandbox = this.live.get(sandboxId);
    if (!sandbox) throw new Error(`sandbox ${sandboxId} is not held by this worker (pid ${process.pid})`);
    return sandbox;
  }

  liveCount(): number {
    return this.live.size;
  }

  async create(request: CreateSandboxRequest): Promise<LocalSandbox> {
    assertBwrapAvailable();
    if (!/^[A-Za-z0-9._-]+$/.test(request.sandboxId)) throw new Error(`bad sandbox id ${request.sandboxId}`);
    const sandbox = new LocalSandbox(request.sandboxId, path.join(this.root, request.sandboxId));
    await fs.rm(sandbox.dir, { recursive: true, force: true });
    await fs.mkdir(sandbox.tmpDir, { recursive: true });
    const owner: OwnerRecord = {
      pid: process.pid,
      hostname: os.hostname(),
      createdAt: new Date().toISOString(),
    };
    await fs.writeFile(path.join(sandbox.dir, 'owner.json'), JSON.stringify(owner));
    try {
      await materializeRepo(request.source, sandbox.repoDir, request.baseCommit);
    } catch (e) {
      await fs.rm(sandbox.dir, { recursive: true, force: true });
      throw e;
    }
    this.live.set(request.sandboxId, sandbox);
    return sandbox;
  }

  async destroy(sandboxId: string): Promise<void> {
    const sandbox = this.live.get(sandboxId);
    this.live.delete(sandboxId);
    await fs.rm(sandbox?.dir ?? path.join(this.root, sandboxId), { recursive: true, force: true });
  }

  async destroyAll(): Promise<void> {
    await Promise.all([...this.live.keys()].map((id) => this.destroy(id)));
  }

  /**
   * Removes sandboxes left behind by workers on this host that are no longer running (crash, kill -9).
   * Called when a worker starts. Returns the ids removed.
   */
  async sweepOrphans(): Promise<string[]> {
    let entries: string[];
    try {
      entries = await fs.readdir(this.root);
    } catch {
      return [];
    }
    const removed: string[] = [];
    for (const entry of entries) {
      if (this.live.has(entry)) continue;
      const dir = path.join(this.root, entry);
      let owner: OwnerRecord | undefined;
      try {
        owner = JSON.parse(await fs.readFile(path.join(dir, 'owner.json'), 'utf8')) as OwnerRecord;
      } catch {
        owner = undefined; // half-created sandbox: no owner record
      }
      if (owner && owner.hostname === os.hostname() && isAlive(owner.pid)) continue;
      if (owner && owner.hostname !== os.hostname()) continue; // shared filesystem: not ours to judge
      await fs.rm(dir, { recursive: true, force: true });
      removed.push(entry);
    }
    return removed;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function git(cwd: string, ...args: string[]): Promise<string> {
  const { stdout } = await run('git', args, { cwd, maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}

/**
 * Copies the task repository into `repoDir`, checked out (detached) at `baseCommit`. Like SWE-bench's
 * images, the copy keeps no remote and no refs beyond HEAD, so later commits (the fix) are not reachable.
 */
async function materializeRepo(source: InstanceSource, repoDir: string, baseCommit: string): Promise<void> {
  switch (source.kind) {
    case 'git':
      await run('git', ['clone', '--quiet', '--no-hardlinks', '--no-checkout', source.path, repoDir]);
      break;
    case 'tarball':
      await fs.mkdir(repoDir, { recursive: true });
      await run('tar', ['-xf', source.path, '-C', repoDir]);
      break;
    case 'docker_image':
      throw new Error(
        `source kind docker_image (${source.image}) needs the docker sandbox backend, not local`,
      );
  }
  try {
    await git(repoDir, 'checkout', '--quiet', '--detach', baseCommit);
  } catch (e) {
    throw new Error(
      `base commit ${baseCommit} cannot be checked out from ${source.path}: ${(e as Error).message}`,
    );
  }
  await git(repoDir, 'remote', 'remove', 'origin').catch(() => undefined);
  const refs = (await git(repoDir, 'for-each-ref', '--format=%(refname)')).split('\n').filter(Boolean);
  for (const ref of refs) await git(repoDir, 'update-ref', '-d', ref);
  await git(repoDir, 'reflog', 'expire', '--expire=now', '--all');
}
