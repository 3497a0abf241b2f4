import { execFile, spawn, spawnSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import * as fsSync from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { CappedOutput } from '../domain/cappedOutput';
import type { InstanceSource } from '../domain/instance';
import type { SandboxLimits } from '../domain/runConfig';
import { createSandboxCgroup, removeSandboxCgroups, type SandboxCgroup } from './cgroupLimits';
import { type ExecServerProcess, execServerArgv, LazyExecServer, stderrTail } from './execServer';
import { repoCacheDir, sandboxesDir, venvBin } from './paths';
import {
  assertSandboxId,
  assertTmpName,
  type CreateSandboxRequest,
  type ExecOptions,
  type ExecResult,
  execResult,
  isOrphan,
  newSandboxOwner,
  type Sandbox,
  type SandboxBackend,
  type SandboxOwner,
  type SweepScope,
  watchForKill,
} from './sandboxBackend';

/**
 * The local sandbox backend: bubblewrap (`bwrap`) over a per-sandbox copy of the task repository.
 * Inside, read-only: the system's program and library directories (/usr and its /bin, /lib… links), a
 * generated /etc (no secrets), the Python environment the tests run with (the project venv and the
 * interpreter install it links to); writable: the repository and a private /tmp. Nothing else of the host:
 * no task files, no project checkout, no home directories, no artifacts, no other sandboxes. Commands run as
 * an unprivileged user (SANDBOX_USER, also as seen from the host), without network, in the sandbox's own
 * pid namespace, under memory / CPU / process limits from the sandbox's own cgroup.
 *
 * One namespace serves all of a sandbox's commands: its first command starts the exec server
 * (`execServer.py`) in it, which forks each command and, when the command ends or times out, kills every
 * process it left (as a pid namespace ending with its command would). Where the server cannot start, each
 * command gets a namespace of its own, as before it existed.
 */

const run = promisify(execFile);

/**
 * The user sandbox commands run as. Not 65534: host files the user namespace does not map show as 65534
 * (nobody) inside, and must not look like the sandbox's own.
 */
export const SANDBOX_USER = { name: 'sandbox', uid: 61000, gid: 61000 } as const;

const runsAsRoot = () => process.getuid?.() === 0;

/** Hands files the worker made in a sandbox to the sandbox user (a worker that is not root made them its). */
async function giveToSandboxUser(paths: string[]): Promise<void> {
  if (!runsAsRoot()) return;
  for (const p of paths) await fs.lchown(p, SANDBOX_USER.uid, SANDBOX_USER.gid);
}

/** One thing shown inside a sandbox: a host path or a symlink. */
interface Mount {
  dest: string;
  source?: string;
  symlink?: string;
  writable?: boolean;
}

/** Read-only /etc entries taken from the host: none holds a secret, and tools misbehave without them. */
const HOST_ETC = [
  'ld.so.cache',
  'alternatives',
  'localtime',
  'timezone',
  'os-release',
  'protocols',
  'services',
  'mime.types',
  'ssl/certs',
  'ssl/openssl.cnf',
  'ca-certificates.conf',
];

/** The /etc files a sandbox gets written for it: its user, its host name, how to look them up. */
function generatedEtc(): Record<string, string> {
  const { name, uid, gid } = SANDBOX_USER;
  return {
    passwd: `root:x:0:0:root:/root:/usr/sbin/nologin\n${name}:x:${uid}:${gid}:entropo sandbox:/tmp:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n`,
    group: `root:x:0:\n${name}:x:${gid}:\nnogroup:x:65534:\n`,
    hosts: '127.0.0.1\tlocalhost sandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n',
    hostname: 'sandbox\n',
    'nsswitch.conf': 'passwd: files\ngroup: files\nshadow: files\nhosts: files\n',
  };
}

/**
 * The system part of a sandbox: /usr, the top-level program and library directories (as the links they are
 * on merged-/usr systems), the generated /etc files in `etcDir` and the harmless host ones.
 */
function systemMounts(etcDir: string): Mount[] {
  const mounts: Mount[] = [{ source: '/usr', dest: '/usr' }];
  for (const top of ['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32']) {
    const host = `/${top}`;
    const stat = fsSync.lstatSync(host, { throwIfNoEntry: false });
    if (stat?.isSymbolicLink()) mounts.push({ dest: host, symlink: fsSync.readlinkSync(host) });
    else if (stat?.isDirectory()) mounts.push({ source: host, dest: host });
  }
  for (const name of Object.keys(generatedEtc())) {
    mounts.push({ source: path.join(etcDir, name), dest: `/etc/${name}` });
  }
  for (const name of HOST_ETC) {
    const host = `/etc/${name}`;
    if (fsSync.existsSync(host)) mounts.push({ source: host, dest: host });
  }
  return mounts;
}

/**
 * The Python environment sandbox commands run with: the venv, and the interpreter install its `python`
 * links to (pyenv puts it under /root) when that is not already under /usr.
 */
function pythonMounts(): Mount[] {
  const venv = path.dirname(venvBin());
  if (!fsSync.existsSync(venv)) return [];
  const mounts: Mount[] = [{ source: venv, dest: venv }];
  const python = ['python3', 'python'].map((n) => path.join(venvBin(), n)).find((p) => fsSync.existsSync(p));
  if (python) {
    const prefix = path.dirname(path.dirname(fsSync.realpathSync(python)));
    const underUsr = prefix === '/usr' || prefix.startsWith('/usr/');
    if (!underUsr && prefix !== venv && !prefix.startsWith(`${venv}/`)) {
      mounts.push({ source: prefix, dest: prefix });
    }
  }
  return mounts;
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

/** Where the repository is inside every local sandbox. */
export const SANDBOX_REPO_PATH = '/testbed';

export class LocalSandbox implements Sandbox {
  readonly backend = 'local' as const;
  readonly repoDir: string;
  readonly tmpDir: string;

  constructor(
    readonly id: string,
    readonly dir: string,
    private readonly cgroup: SandboxCgroup | null = null,
    private readonly limits?: SandboxLimits,
    /** Host paths shown read-only at the same place inside (the task builder's tracer). */
    private readonly readOnlyPaths: readonly string[] = [],
    /** Commands through a long-lived exec server (the default); off: a namespace per command. */
    private readonly useExecServer = true,
    private readonly log: (line: string) => void = (l) => console.warn(l),
  ) {
    this.repoDir = path.join(dir, 'repo');
    this.tmpDir = path.join(dir, 'tmp');
  }

  private readonly server = new LazyExecServer(
    () => this.startExecServer(),
    (why) => this.log(`[sandbox ${this.id}] no exec server (${why}); one namespace per command`),
  );

  /**
   * Inside, the repository is always at `/testbed` (SWE-bench's place, as in task images): what the agent
   * sees does not depend on where the host keeps the sandbox, so an episode restored into another sandbox
   * shows the same paths, and observations stay byte-identical.
   */
  get repoPath(): string {
    return SANDBOX_REPO_PATH;
  }

  /**
   * bwrap is started by a shell that first joins the sandbox's cgroups, so every process the command forks
   * is inside the limits from its first instruction. Without cgroups, an address-space rlimit caps memory.
   */
  private launcher(): { args: string[]; env: NodeJS.ProcessEnv } {
    const join = 'for f in $ENTROPO_CGROUP_PROCS; do echo $$ > "$f" || exit 125; done';
    // Without cgroups: memory as address space, processes per user (ignored for root, which has cgroups).
    const rlimit =
      !this.cgroup && this.limits
        ? `ulimit -v ${this.limits.memoryMb * 1024} || exit 125; ulimit -u ${this.limits.pids} 2>/dev/null;`
        : '';
    return {
      args: ['-c', `${join}; ${rlimit} exec "$@"`, 'entropo-sandbox', 'bwrap'],
      env: { ...process.env, ENTROPO_CGROUP_PROCS: this.cgroup?.procsFiles.join(' ') ?? '' },
    };
  }

  /**
   * What the sandbox sees, and nothing else: the system's program and library directories, a generated /etc,
   * the Python environment the tests run with, the extra read-only paths the backend was given, the
   * repository and a private /tmp.
   */
  private mounts(): Mount[] {
    const mounts: Mount[] = [
      ...systemMounts(path.join(this.dir, 'etc')),
      { source: this.tmpDir, dest: '/tmp', writable: true },
      // After the private /tmp, so that they stay visible when the project (its venv, the builder's tracer)
      // is checked out under /tmp on the host, as CI checkouts and tests' homes often are.
      ...pythonMounts(),
      ...this.readOnlyPaths.map((p) => ({ source: p, dest: p })),
      { source: this.repoDir, dest: SANDBOX_REPO_PATH, writable: true },
    ];
    return mounts;
  }

  /** bwrap's arguments: the same for every command of the sandbox, so worked out (host paths looked up) once. */
  private bwrapArgs(): string[] {
    this.bwrapArgsMemo ??= this.makeBwrapArgs();
    return this.bwrapArgsMemo;
  }

  private bwrapArgsMemo: string[] | undefined;

  private makeBwrapArgs(): string[] {
    const env: Record<string, string> = {
      PATH: `${venvBin()}:/usr/local/bin:/usr/bin:/bin`,
      HOME: '/tmp',
      TMPDIR: '/tmp',
      USER: SANDBOX_USER.name,
      LOGNAME: SANDBOX_USER.name,
      LANG: 'C.UTF-8',
      TERM: 'dumb',
      PYTHONDONTWRITEBYTECODE: '1',
      GIT_CONFIG_NOSYSTEM: '1',
      EMAIL: `${SANDBOX_USER.name}@sandbox.invalid`, // so that git can commit without configuration
    };
    // bwrap would make the directories leading to a mount point as private as their host counterparts
    // (/root is 0700): make them first, open to the sandbox user.
    const made = new Set<string>(['/']);
    const binds = this.mounts().flatMap((mount) => {
      const dirs: string[] = [];
      for (let d = path.dirname(mount.dest); !made.has(d); d = path.dirname(d)) dirs.unshift(d);
      for (const d of dirs) made.add(d);
      for (const d of [...made]) if (d.startsWith(`${mount.dest}/`)) made.delete(d); // now hidden
      return [
        ...dirs.flatMap((d) => ['--perms', '0755', '--dir', d]),
        ...(mount.symlink
          ? ['--symlink', mount.symlink, mount.dest]
          : [mount.writable ? '--bind' : '--ro-bind', mount.source!, mount.dest]),
      ];
    });
    const setUser = runsAsRoot()
      ? ['--cap-add', 'CAP_SETUID', '--cap-add', 'CAP_SETGID', '--cap-add', 'CAP_SETPCAP']
      : [];
    // biome-ignore format: bwrap's arguments read best as option/value pairs
    return [
      '--dev', '/dev',
      '--proc', '/proc',
      ...binds,
      // The root itself is bwrap's tmpfs: make it, and the mount points bwrap made in it, read-only.
      '--remount-ro', '/',
      '--unshare-net', '--unshare-pid', '--unshare-ipc', '--unshare-uts', '--unshare-cgroup-try',
      '--hostname', 'sandbox',
      '--die-with-parent', '--new-session',
      ...setUser,
      '--chdir', SANDBOX_REPO_PATH,
      '--clearenv',
      ...Object.entries(env).flatMap(([k, v]) => ['--setenv', k, v]),
      '--',
    ];
  }

  /**
   * The command, run as the sandbox user. bwrap itself runs as the worker's user (root, usually): it needs
   * that to read the mount sources (the interpreter may live under a private /root) and a user namespace
   * would map the sandbox's user back to root on the host. So bwrap keeps, for the command only, the three
   * capabilities setpriv needs to switch to the sandbox user for good and empty every capability set.
   */
  private asSandboxUser(command: string): string[] {
    if (!runsAsRoot()) return ['bash', '-c', command];
    const { uid, gid } = SANDBOX_USER;
    return [
      'setpriv',
      `--reuid=${uid}`,
      `--regid=${gid}`,
      '--clear-groups',
      '--inh-caps=-all',
      '--bounding-set=-all',
      '--no-new-privs',
      '--',
      'bash',
      '-c',
      command,
    ];
  }

  async exec(command: string, options: ExecOptions): Promise<ExecResult> {
    const server = this.useExecServer ? await this.server.get() : undefined;
    if (server) return server.run(this.asSandboxUser(command), options);
    return this.execInOwnNamespace(command, options);
  }

  /** Starts the exec server inside a new bwrap of this sandbox (see `execServer.ts`). */
  private async startExecServer(): Promise<ExecServerProcess> {
    const python = [path.join(venvBin(), 'python3'), '/usr/bin/python3'].find((p) => fsSync.existsSync(p));
    if (!python) throw new Error('no python3 for it');
    // The server runs as the worker's user inside (root, usually) and keeps, besides what setpriv needs to
    // start each command as the sandbox user, CAP_KILL: the commands' processes are that user's.
    const args = this.bwrapArgs().slice(0, -1);
    if (runsAsRoot()) args.push('--cap-add', 'CAP_KILL');
    const launcher = this.launcher();
    const child = spawn('bash', [...launcher.args, ...args, '--', ...execServerArgv(python)], {
      detached: true,
      env: launcher.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const errors = stderrTail();
    child.stderr.pipe(errors.sink);
    const exited = new Promise<void>((resolve) => {
      child.once('close', () => resolve());
      child.once('error', () => resolve());
    });
    const destroy = async () => {
      if (child.pid !== undefined) {
        try {
          process.kill(-child.pid, 'SIGKILL'); // bwrap's namespace, and every process in it, die with it
        } catch {
          // already gone
        }
      }
      await exited;
    };
    return {
      input: child.stdin,
      output: child.stdout,
      stderrTail: errors.text,
      destroy,
      discard: destroy,
    };
  }

  /** Ends the exec server and every process in the sandbox. */
  async close(): Promise<void> {
    await this.server.close();
  }

  /** The command in a namespace of its own, which ends (and takes every process along) when it does. */
  private execInOwnNamespace(command: string, options: ExecOptions): Promise<ExecResult> {
    const started = performance.now();
    const stdout = new CappedOutput(options.outputLimitBytes);
    const stderr = new CappedOutput(options.outputLimitBytes);
    return new Promise<ExecResult>((resolve, reject) => {
      // detached: bwrap leads its own process group, which we kill as a whole on timeout. bwrap's pid-1
      // inside the namespace dies with it (--die-with-parent), taking every process in the sandbox along.
      const launcher = this.launcher();
      const child = spawn('bash', [...launcher.args, ...this.bwrapArgs(), ...this.asSandboxUser(command)], {
        detached: true,
        env: launcher.env,
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let settled = false;
      const watch = watchForKill(options, () => {
        if (child.pid !== undefined) {
          try {
            process.kill(-child.pid, 'SIGKILL');
          } catch {
            // already gone
          }
        }
      });
      child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
      child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
      child.stdin.on('error', () => {}); // the command may exit without reading its stdin
      child.stdin.end(options.stdin ?? '');
      child.on('error', (err) => {
        watch.stop();
        if (settled) return;
        settled = true;
        reject((err as NodeJS.ErrnoException).code === 'ENOENT' ? new BwrapMissingError() : err);
      });
      child.on('close', (code) => {
        watch.stop();
        if (settled) return;
        settled = true;
        const exitCode = watch.killed() ? null : code;
        resolve(execResult({ stdout, stderr }, { exitCode, timedOut: watch.timedOut(), started }));
      });
    });
  }

  /**
   * Resolves a repository-relative path, symlinks included, refusing anything that ends outside the
   * repository: the worker reads and writes these files with its own rights. No sandbox process but the
   * exec server runs between commands (it kills what each command leaves), so nothing can swap a path
   * after this check.
   */
  async resolveInRepo(relative: string): Promise<string> {
    const target = path.resolve(this.repoDir, relative);
    // The deepest part that exists, links resolved, then the rest (which mkdir and writeFile will create).
    let existing = target;
    const rest: string[] = [];
    let real: string | undefined;
    while (real === undefined) {
      real = await fs.realpath(existing).catch(() => undefined);
      if (real === undefined && (await fs.lstat(existing).catch(() => undefined))) {
        throw new Error(`path ${JSON.stringify(relative)} goes through a link to nowhere`);
      }
      if (real === undefined) {
        if (existing === path.dirname(existing))
          throw new Error(`path ${JSON.stringify(relative)} cannot be resolved`);
        rest.unshift(path.basename(existing));
        existing = path.dirname(existing);
      }
    }
    real = path.join(real, ...rest);
    if (!real.startsWith(`${this.repoDir}${path.sep}`)) {
      throw new Error(`path ${JSON.stringify(relative)} is outside the repository`);
    }
    return real;
  }

  async writeFile(relative: string, content: string | Buffer): Promise<void> {
    const target = await this.resolveInRepo(relative);
    const firstNewDir = await fs.mkdir(path.dirname(target), { recursive: true });
    await fs.writeFile(target, content);
    // What the worker made belongs to the sandbox user, who must be able to change it.
    const made = [target];
    if (firstNewDir) {
      for (let d = path.dirname(target); d.length >= firstNewDir.length; d = path.dirname(d)) made.push(d);
    }
    await giveToSandboxUser(made);
  }

  async readFile(relative: string): Promise<Buffer> {
    return fs.readFile(await this.resolveInRepo(relative));
  }

  async writeTmpFile(name: string, content: string | Buffer): Promise<string> {
    assertTmpName(name);
    const target = path.join(this.tmpDir, name);
    await fs.rm(target, { recursive: true, force: true }); // a link the sandbox left there is replaced, not followed
    await fs.writeFile(target, content, { flag: 'wx' });
    await giveToSandboxUser([target]);
    return `/tmp/${name}`;
  }
}

/** Creates, finds and cleans up local sandboxes on this host. */
export class LocalSandboxBackend implements SandboxBackend {
  readonly name = 'local' as const;
  private readonly live = new Map<string, LocalSandbox>();

  constructor(
    readonly root: string = sandboxesDir(),
    private readonly log: (line: string) => void = (l) => console.warn(l),
    /**
     * Limits through cgroups (the default). Off only to measure what they cost: under cgroup v1 each command
     * joining its cgroup waits for an RCU grace period (BENCHMARKS.md).
     */
    private readonly useCgroups = true,
    /** Host paths every sandbox of this backend shows read-only at the same place (the builder's tracer). */
    private readonly readOnlyPaths: readonly string[] = [],
    /** Commands through each sandbox's long-lived exec server; off only to measure what it saves. */
    private readonly useExecServer = true,
  ) {}

  find(sandboxId: string): LocalSandbox | undefined {
    return this.live.get(sandboxId);
  }

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
    assertSandboxId(request.sandboxId);
    if (!request.source) {
      throw new Error(
        `instance ${request.instanceId} has no "source" (local git repo or tarball) for the local sandbox`,
      );
    }
    const dir = path.join(this.root, request.sandboxId);
    await fs.rm(dir, { recursive: true, force: true });
    await fs.mkdir(path.join(dir, 'tmp'), { recursive: true });
    const owner = newSandboxOwner(request);
    await fs.writeFile(path.join(dir, 'owner.json'), JSON.stringify(owner));
    let cgroup: SandboxCgroup | null = null;
    try {
      await fs.mkdir(path.join(dir, 'etc'));
      for (const [name, content] of Object.entries(generatedEtc())) {
        await fs.writeFile(path.join(dir, 'etc', name), content);
      }
      await materializeRepo(request.source, path.join(dir, 'repo'), request.baseCommit);
      // The sandbox user owns its repository and /tmp; the sandbox's directory itself stays the worker's.
      if (runsAsRoot()) {
        await run('chown', [
          '-R',
          `${SANDBOX_USER.uid}:${SANDBOX_USER.gid}`,
          path.join(dir, 'repo'),
          path.join(dir, 'tmp'),
        ]);
      }
      if (this.useCgroups) cgroup = await createSandboxCgroup(request.sandboxId, request.limits, this.log);
    } catch (e) {
      await fs.rm(dir, { recursive: true, force: true });
      throw e;
    }
    const sandbox = new LocalSandbox(
      request.sandboxId,
      dir,
      cgroup,
      request.limits,
      this.readOnlyPaths,
      this.useExecServer,
      this.log,
    );
    this.live.set(request.sandboxId, sandbox);
    return sandbox;
  }

  async destroy(sandboxId: string): Promise<void> {
    const sandbox = this.live.get(sandboxId);
    this.live.delete(sandboxId);
    await sandbox?.close();
    await removeSandboxCgroups([sandboxId]);
    await fs.rm(sandbox?.dir ?? path.join(this.root, sandboxId), { recursive: true, force: true });
  }

  async destroyAll(): Promise<void> {
    await Promise.all([...this.live.keys()].map((id) => this.destroy(id)));
  }

  /**
   * Removes orphan sandboxes under the root (see `isOrphan`), those this worker holds included when their
   * workflow has closed; other deployments' sandboxes are judged only by whether their worker is alive.
   */
  async sweepOrphans(scope: SweepScope = {}): Promise<string[]> {
    let entries: string[];
    try {
      entries = await fs.readdir(this.root);
    } catch {
      return [];
    }
    const removed: string[] = [];
    for (const entry of entries) {
      const dir = path.join(this.root, entry);
      let owner: SandboxOwner | undefined;
      let ageMs: number | undefined;
      try {
        owner = JSON.parse(await fs.readFile(path.join(dir, 'owner.json'), 'utf8')) as SandboxOwner;
      } catch {
        owner = undefined; // half-created sandbox: no owner record
        ageMs = await fs.stat(dir).then(
          (st) => Date.now() - st.mtimeMs,
          () => undefined,
        );
      }
      if (!(await isOrphan(owner, scope, ageMs))) continue;
      if (this.live.has(entry)) await this.destroy(entry);
      else {
        await removeSandboxCgroups([entry]);
        await fs.rm(dir, { recursive: true, force: true });
      }
      removed.push(entry);
    }
    return removed;
  }
}

async function git(cwd: string, ...args: string[]): Promise<string> {
  const { stdout } = await run('git', args, { cwd, maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}

/** The task's base commit is not in its repository: a bad instance, which no retry will mend. */
export class BaseCommitMissingError extends Error {
  override name = 'BaseCommitMissingError';
}

/**
 * Puts the repository into `repoDir`, checked out (detached) at `baseCommit`, holding only the objects
 * reachable from it: no refs, remote, reflogs, stash or stray packs, so no later commit (the fix) can be
 * found with git. Like SWE-bench's images. A git source goes through a cache of pruned stores, one per
 * (repository, base commit), so each sandbox costs a copy of that store and a checkout.
 */
export async function materializeRepo(
  source: InstanceSource,
  repoDir: string,
  baseCommit: string,
): Promise<void> {
  switch (source.kind) {
    case 'git': {
      const store = await prunedStore(source.path, baseCommit);
      await fs.mkdir(repoDir, { recursive: true });
      await fs.cp(store.dir, path.join(repoDir, '.git'), { recursive: true });
      await git(repoDir, 'config', 'core.bare', 'false');
      await checkoutBase(repoDir, store.commit);
      return;
    }
    case 'tarball': {
      // The tarball's working tree stays as it is (files git ignores included); its git store is replaced.
      await fs.mkdir(repoDir, { recursive: true });
      await run('tar', ['-xf', source.path, '-C', repoDir]);
      const unpruned = `${repoDir}.git-unpruned`;
      await fs.rename(path.join(repoDir, '.git'), unpruned).catch((e) => {
        throw new BaseCommitMissingError(
          `${source.path} holds no git repository (.git): ${(e as Error).message}`,
        );
      });
      try {
        const commit = await resolveBase(unpruned, baseCommit, source.path);
        await writePrunedStore(unpruned, commit, path.join(repoDir, '.git'));
        await git(repoDir, 'config', 'core.bare', 'false');
        await checkoutBase(repoDir, commit);
      } finally {
        await fs.rm(unpruned, { recursive: true, force: true });
      }
      return;
    }
    case 'docker_image':
      throw new Error(
        `source kind docker_image (${source.image}) needs the docker sandbox backend, not local`,
      );
  }
}

/** The full hash of `baseCommit` in the repository at `gitDir`, or the error that says it is not there. */
async function resolveBase(gitDir: string, baseCommit: string, sourceName: string): Promise<string> {
  try {
    return (
      await run('git', ['--git-dir', gitDir, 'rev-parse', '--verify', '--quiet', `${baseCommit}^{commit}`])
    ).stdout.trim();
  } catch {
    throw new BaseCommitMissingError(`base commit ${baseCommit} is not in the repository ${sourceName}`);
  }
}

/**
 * Writes into `gitDir` a bare git store holding exactly the objects reachable from `commit` of the
 * repository at `sourceGitDir`: one pack, HEAD detached at `commit`, no refs and no logs.
 */
async function writePrunedStore(sourceGitDir: string, commit: string, gitDir: string): Promise<void> {
  await run('git', ['init', '--quiet', '--bare', gitDir]);
  // --revs with the commit on stdin: the commit, its ancestors, and their trees and blobs; nothing else.
  const pack = spawn('git', ['--git-dir', sourceGitDir, 'pack-objects', '--revs', '--stdout', '--quiet'], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const index = spawn('git', ['--git-dir', gitDir, 'index-pack', '--stdin'], {
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  pack.stdout.pipe(index.stdin);
  pack.stdin.end(`${commit}\n`);
  const status = (p: typeof pack | typeof index, name: string) =>
    new Promise<void>((resolve, reject) => {
      let err = '';
      p.stderr?.on('data', (d: Buffer) => {
        err += d.toString();
      });
      p.on('error', reject);
      p.on('close', (code) =>
        code === 0 ? resolve() : reject(new Error(`git ${name} failed (${code}): ${err.trim()}`)),
      );
    });
  await Promise.all([status(pack, 'pack-objects'), status(index, 'index-pack')]);
  await fs.writeFile(path.join(gitDir, 'HEAD'), `${commit}\n`);
  // Nothing records where HEAD has been: a reflog would be one more place to look.
  await run('git', ['--git-dir', gitDir, 'config', 'core.logAllRefUpdates', 'false']);
  for (const leftover of ['logs', 'hooks', 'description', 'info']) {
    await fs.rm(path.join(gitDir, leftover), { recursive: true, force: true });
  }
}

/** Fills the working tree and index of `repoDir` from its HEAD (`commit`), leaving other files alone. */
async function checkoutBase(repoDir: string, commit: string): Promise<void> {
  await git(repoDir, 'checkout', '--quiet', '--force', '--detach', commit);
  await fs.rm(path.join(repoDir, '.git', 'logs'), { recursive: true, force: true });
}

/**
 * The cached pruned bare store of `baseCommit` from the git repository at `sourcePath`, made on first use.
 * A commit's history never changes, so an entry never goes stale; it is made aside and renamed into place,
 * so concurrent workers never see half of one.
 */
async function prunedStore(sourcePath: string, baseCommit: string): Promise<{ dir: string; commit: string }> {
  const real = await fs.realpath(sourcePath).catch(() => {
    throw new BaseCommitMissingError(`the repository ${sourcePath} does not exist`);
  });
  // Not a repository above it (the project's own, say): the source itself must be one.
  const sourceGitDir = (
    await run('git', ['rev-parse', '--absolute-git-dir'], {
      cwd: real,
      env: { ...process.env, GIT_CEILING_DIRECTORIES: path.dirname(real) },
    }).catch((e) => {
      throw new BaseCommitMissingError(`${sourcePath} is not a git repository: ${(e as Error).message}`);
    })
  ).stdout.trim();
  const commit = await resolveBase(sourceGitDir, baseCommit, sourcePath);
  const key = createHash('sha256').update(`${real}\0${commit}`).digest('hex').slice(0, 32);
  const dir = path.join(repoCacheDir(), `${key}.git`);
  if (fsSync.existsSync(path.join(dir, 'HEAD'))) return { dir, commit };
  await fs.mkdir(repoCacheDir(), { recursive: true });
  const making = path.join(repoCacheDir(), `.making-${key}-${randomUUID()}`);
  try {
    await writePrunedStore(sourceGitDir, commit, making);
    await fs.rename(making, dir).catch((e: NodeJS.ErrnoException) => {
      // Another worker made it first: theirs is the same.
      if (e.code !== 'ENOTEMPTY' && e.code !== 'EEXIST') throw e;
    });
  } finally {
    await fs.rm(making, { recursive: true, force: true });
  }
  return { dir, commit };
}
