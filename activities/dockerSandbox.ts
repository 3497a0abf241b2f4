import { randomUUID } from 'node:crypto';
import * as path from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import Docker from 'dockerode';
import * as tar from 'tar-stream';
import { CappedOutput } from '../domain/cappedOutput';
import {
  daemonMessage,
  isNotFoundError,
  isTransientDockerError,
  retryDelaysMs,
} from '../domain/dockerErrors';
import type { DockerConfig } from '../domain/runConfig';
import { dockerConfigSchema } from '../domain/runConfig';
import { type ExecServerProcess, execServerArgv, LazyExecServer, stderrTail } from './execServer';
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
 * The docker sandbox backend: one container per sandbox from the task's image (SWE-bench / R2E-Gym images,
 * or ours from `infra/buildImages.ts`), with no network, memory / CPU / pids limits, a read-only image
 * filesystem except the repository (a volume seeded from the image) and an in-memory /tmp, and labels that
 * name its worker, run and workflow so a sweeper can find it when they are gone.
 *
 * Commands run through the sandbox's exec server (`execServer.py`, started by one `docker exec` with its
 * stdin attached): it forks each command, and kills what the command leaves behind and, at a timeout, the
 * command with everything it started. If the server does not answer a kill in time, the container is
 * restarted: its processes die, the repository volume stays.
 *
 * Images without `python3` get a `docker exec` per command instead. Docker has no "kill this exec" call, so
 * every such exec carries a marker in its environment, which every process it forks inherits (setsid and
 * double forks included); at the timeout a second exec stops and kills every process bearing the marker,
 * and if even that cannot run (a fork bomb holding every pid), the container is restarted.
 */

export const SANDBOX_LABEL = 'entropo.sandbox';
const EXEC_MARKER = 'ENTROPO_EXEC';

export class DockerImageMissingError extends Error {
  override name = 'DockerImageMissingError';
  constructor(
    readonly image: string,
    host: string,
    fromSource: boolean,
  ) {
    super(
      `docker image ${image} is not in the Docker engine at ${host}. ` +
        (fromSource
          ? `Build it from the instance's source with \`entropo tasks images <instances.jsonl>\` (it builds the base image first when missing).`
          : `It is named by the instance's source; load it into this engine (\`docker pull ${image}\` where a registry is reachable, or \`docker load -i <image.tar>\`).`),
    );
  }
}

export class DockerUnavailableError extends Error {
  override name = 'DockerUnavailableError';
  constructor(host: string, cause: unknown) {
    super(
      `no Docker engine answers at ${host}: ${daemonMessage(cause)}. Start one (as root: ` +
        '`bash infra/dockerd.sh`) or point DOCKER_HOST / sandbox.docker.host at one.',
    );
  }
}

export class SandboxStartError extends Error {
  override name = 'SandboxStartError';
}

/** Connection options for dockerode from a DOCKER_HOST-style address; undefined = dockerode's defaults. */
export function dockerConnection(host: string | undefined): Docker.DockerOptions | undefined {
  if (!host) return undefined;
  const url = new URL(host);
  if (url.protocol === 'unix:') return { socketPath: url.pathname };
  if (url.protocol === 'ssh:')
    return { protocol: 'ssh', host: url.hostname, port: url.port || 22, username: url.username };
  return {
    protocol: url.protocol === 'https:' ? 'https' : 'http',
    host: url.hostname,
    port: url.port || (url.protocol === 'https:' ? 2376 : 2375),
  };
}

/** Calls `fn`, retrying transient daemon errors (connection drops, 5xx, container busy) with backoff. */
export async function withDockerRetry<T>(fn: () => Promise<T>, attempts = 5): Promise<T> {
  const delays = retryDelaysMs(attempts);
  for (let i = 0; ; i++) {
    try {
      return await fn();
    } catch (e) {
      if (i >= delays.length || !isTransientDockerError(e)) throw e;
      await new Promise((r) => setTimeout(r, delays[i]));
    }
  }
}

/** A Writable that feeds a CappedOutput. */
function sink(output: CappedOutput): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, done) {
      output.push(chunk);
      done();
    },
  });
}

/**
 * A bash function that kills every process bearing the exec's marker except the shell running it, with
 * builtins only (no fork needed, so it works when a fork bomb holds every pid): stop them all, kill them
 * all, repeat until none is left. Returns 1 if some survive 200 rounds.
 */
function killMarkedFunction(marker: string): string {
  return `kill_marked() {
  local self=$$ round d p v vars victims
  for ((round = 0; round < 200; round++)); do
    victims=()
    for d in /proc/[0-9]*; do
      p=\${d#/proc/}
      [ "$p" = "$self" ] && continue
      mapfile -d '' vars < "$d/environ" 2>/dev/null || continue
      for v in "\${vars[@]}"; do
        if [ "$v" = "${EXEC_MARKER}=${marker}" ]; then victims+=("$p"); break; fi
      done
    done
    [ \${#victims[@]} -eq 0 ] && return 0
    kill -STOP "\${victims[@]}" 2>/dev/null
    kill -KILL "\${victims[@]}" 2>/dev/null
  done
  return 1
}`;
}

/**
 * Runs the command in a child shell; when that shell exits, whatever it left running in the background dies
 * too (as in the local sandbox, where the command's pid namespace ends with it), and the exit status is the
 * command's. The command is an argument, never spliced into the script.
 */
function wrapCommand(command: string, marker: string): string[] {
  return [
    'bash',
    '-c',
    `${killMarkedFunction(marker)}\nbash -c "$1"\nstatus=$?\nkill_marked >/dev/null 2>&1\nexit $status`,
    'entropo-exec',
    command,
  ];
}

/** The image label that names the unprivileged user (uid:gid) its repository belongs to. */
export const SANDBOX_USER_LABEL = 'entropo.sandbox_user';

function sandboxUserOf(image: Docker.ImageInspectInfo): { uid: number; gid: number } | undefined {
  const match = /^(\d+):(\d+)$/.exec(image.Config?.Labels?.[SANDBOX_USER_LABEL] ?? '');
  return match ? { uid: Number(match[1]), gid: Number(match[2]) } : undefined;
}

export class DockerSandbox implements Sandbox {
  readonly backend = 'docker' as const;

  constructor(
    readonly id: string,
    readonly container: Docker.Container,
    readonly repoPath: string,
    readonly image: string,
    /** Who commands run as, when not root: files written into the repository are given to them. */
    readonly user?: { uid: number; gid: number },
    /** Commands through a long-lived exec server (the default); off: a `docker exec` per command. */
    private readonly useExecServer = true,
    private readonly log: (line: string) => void = (l) => console.warn(l),
  ) {}

  private readonly server = new LazyExecServer(
    () => this.startExecServer(),
    (why) => this.log(`[sandbox ${this.id}] no exec server (${why}); a docker exec per command`),
  );

  async exec(command: string, options: ExecOptions): Promise<ExecResult> {
    const server = this.useExecServer ? await this.server.get() : undefined;
    if (server) return server.run(['bash', '-c', command], options);
    return this.runInOwnExec(command, options);
  }

  /** Starts the exec server in the container: one `docker exec` with its stdin attached. */
  private async startExecServer(): Promise<ExecServerProcess> {
    const exec = await withDockerRetry(() =>
      this.container.exec({
        Cmd: execServerArgv('python3'),
        AttachStdin: true,
        AttachStdout: true,
        AttachStderr: true,
        WorkingDir: this.repoPath,
      }),
    );
    const stream = await withDockerRetry(() => exec.start({ hijack: true, stdin: true }));
    const output = new PassThrough();
    const errors = stderrTail();
    this.container.modem.demuxStream(stream, output, errors.sink);
    const ended = new Promise<void>((resolve) => {
      const end = () => {
        output.end();
        resolve();
      };
      stream.once('end', end);
      stream.once('close', end);
      stream.once('error', end);
    });
    return {
      input: stream,
      output,
      stderrTail: errors.text,
      destroy: async () => {
        await withDockerRetry(() => this.container.restart({ t: 0 }));
        (stream as unknown as { destroy?: () => void }).destroy?.();
        await ended;
      },
    };
  }

  /** The command in a `docker exec` of its own (images without python3). */
  private async runInOwnExec(command: string, options: ExecOptions): Promise<ExecResult> {
    const { stdin } = options;
    const started = performance.now();
    const stdout = new CappedOutput(options.outputLimitBytes);
    const stderr = new CappedOutput(options.outputLimitBytes);
    const marker = randomUUID();
    const cmd = wrapCommand(command, marker);
    const withStdin = stdin !== undefined && stdin.length > 0;
    const exec = await withDockerRetry(() =>
      this.container.exec({
        Cmd: cmd,
        AttachStdin: withStdin,
        AttachStdout: true,
        AttachStderr: true,
        WorkingDir: this.repoPath,
        Env: [`${EXEC_MARKER}=${marker}`],
      }),
    );
    const stream = await withDockerRetry(() => exec.start({ hijack: true, stdin: withStdin }));
    let killing: Promise<void> | undefined;
    const done = new Promise<void>((resolve) => {
      stream.once('end', resolve);
      stream.once('close', resolve);
      stream.once('error', resolve);
    });
    const watch = watchForKill(options, () => {
      killing ??= this.killMarked(marker, done, stream);
    });
    this.container.modem.demuxStream(stream, sink(stdout), sink(stderr));
    if (withStdin) {
      stream.write(stdin);
      stream.end(); // half-close: the command sees EOF on its stdin
    }
    try {
      await done;
      await killing;
    } finally {
      watch.stop();
    }
    const exitCode = watch.killed() ? null : await this.exitCodeOf(exec);
    return execResult({ stdout, stderr }, { exitCode, timedOut: watch.timedOut(), started });
  }

  private async exitCodeOf(exec: Docker.Exec): Promise<number | null> {
    // The stream can end a moment before the daemon records the exit.
    for (let i = 0; i < 100; i++) {
      const info = await withDockerRetry(() => exec.inspect());
      if (!info.Running) return info.ExitCode ?? null;
      await new Promise((r) => setTimeout(r, 20));
    }
    return null;
  }

  /** Kills the exec's processes; if that fails or they hold on, restarts the container. */
  private async killMarked(
    marker: string,
    done: Promise<void>,
    stream: NodeJS.ReadWriteStream,
  ): Promise<void> {
    let killed = false;
    for (let attempt = 0; attempt < 20 && !killed; attempt++) {
      try {
        const killer = await this.container.exec({
          Cmd: ['bash', '-c', `${killMarkedFunction(marker)}\nkill_marked`],
          User: '0',
          AttachStdout: true,
          AttachStderr: true,
        });
        const out = await killer.start({ hijack: true, stdin: false });
        out.resume();
        await new Promise<void>((resolve) => {
          out.once('end', resolve);
          out.once('close', resolve);
          out.once('error', resolve);
        });
        killed = (await this.exitCodeOf(killer)) === 0;
      } catch {
        // No pid to spare for the killer yet (fork bomb), or the daemon hiccuped: try again.
      }
      if (!killed) await new Promise((r) => setTimeout(r, 100));
    }
    const ended = await Promise.race([
      done.then(() => true),
      new Promise((r) => setTimeout(() => r(false), 5000)),
    ]);
    if (killed && ended) return;
    await withDockerRetry(() => this.container.restart({ t: 0 }));
    (stream as unknown as { destroy?: () => void }).destroy?.();
  }

  /** Absolute path inside the container of a repository-relative path; refuses anything outside the repo. */
  resolveInRepo(relative: string): string {
    const target = path.posix.resolve(this.repoPath, relative);
    if (!target.startsWith(`${this.repoPath}/`))
      throw new Error(`path ${JSON.stringify(relative)} is outside the repository`);
    return target;
  }

  async writeFile(relative: string, content: string | Buffer): Promise<void> {
    const target = this.resolveInRepo(relative);
    const pack = tar.pack();
    const name = path.posix.relative(this.repoPath, target);
    const owner = { uid: this.user?.uid ?? 0, gid: this.user?.gid ?? 0 };
    // The directories leading to the file too, or the daemon would make the missing ones root's.
    const parts = name.split('/').slice(0, -1);
    for (let i = 1; i <= parts.length; i++) {
      pack.entry({ name: parts.slice(0, i).join('/'), type: 'directory', mode: 0o755, ...owner });
    }
    pack.entry({ name, mode: 0o644, ...owner }, Buffer.from(content));
    pack.finalize();
    await withDockerRetry(() =>
      this.container.putArchive(pack as unknown as NodeJS.ReadableStream, { path: this.repoPath }),
    );
  }

  async readFile(relative: string): Promise<Buffer> {
    const target = this.resolveInRepo(relative);
    let archive: NodeJS.ReadableStream;
    try {
      archive = await withDockerRetry(() => this.container.getArchive({ path: target }));
    } catch (e) {
      if (isNotFoundError(e)) throw Object.assign(new Error(`no such file: ${relative}`), { code: 'ENOENT' });
      throw e;
    }
    return new Promise<Buffer>((resolve, reject) => {
      const extract = tar.extract();
      let content: Buffer | undefined;
      extract.on('entry', (header, entryStream, next) => {
        const chunks: Buffer[] = [];
        entryStream.on('data', (c: unknown) => {
          chunks.push(c as Buffer);
        });
        entryStream.on('end', () => {
          if (content === undefined) {
            if (header.type !== 'file') {
              reject(new Error(`${relative} is a ${header.type}, not a file`));
              return;
            }
            content = Buffer.concat(chunks);
          }
          next();
        });
      });
      extract.on('finish', () => resolve(content ?? Buffer.alloc(0)));
      extract.on('error', reject);
      archive.pipe(extract);
    });
  }

  /**
   * /tmp is a tmpfs, which Docker's archive API cannot write into, so the file goes through an exec's stdin.
   */
  async writeTmpFile(name: string, content: string | Buffer): Promise<string> {
    assertTmpName(name);
    const target = `/tmp/${name}`;
    const result = await this.exec(`cat > ${target}`, {
      timeoutSec: 60,
      outputLimitBytes: 4096,
      stdin: content,
    });
    if (result.exitCode !== 0) throw new Error(`cannot write ${target}: ${result.stderr}`);
    return target;
  }
}

export interface DockerBackendOptions {
  /** DOCKER_HOST-style address; unset = the worker's DOCKER_HOST or the local socket. */
  host?: string;
  /** Commands through each sandbox's long-lived exec server (default true); off only to measure it. */
  execServer?: boolean;
  log?: (line: string) => void;
}

/** Creates, finds and cleans up docker sandboxes on one Docker engine. */
export class DockerSandboxBackend implements SandboxBackend {
  readonly name = 'docker' as const;
  readonly docker: Docker;
  readonly host: string;
  private readonly live = new Map<string, DockerSandbox>();

  constructor(private readonly options: DockerBackendOptions = {}) {
    this.docker = new Docker(dockerConnection(options.host));
    this.host = options.host ?? process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock';
  }

  /** Throws {@link DockerUnavailableError} when no engine answers (after `attempts` tries). */
  async ping(attempts = 2): Promise<void> {
    try {
      await withDockerRetry(() => this.docker.ping(), attempts);
    } catch (e) {
      throw new DockerUnavailableError(this.host, e);
    }
  }

  find(sandboxId: string): DockerSandbox | undefined {
    return this.live.get(sandboxId);
  }

  async create(request: CreateSandboxRequest): Promise<DockerSandbox> {
    assertSandboxId(request.sandboxId);
    const config: DockerConfig = request.docker ?? dockerConfigSchema.parse({});
    const image = request.image;
    if (!image) throw new Error(`instance ${request.instanceId} has no docker image`);
    await this.ping();
    let imageInfo: Docker.ImageInspectInfo;
    try {
      imageInfo = await withDockerRetry(() => this.docker.getImage(image).inspect());
    } catch (e) {
      if (isNotFoundError(e))
        throw new DockerImageMissingError(image, this.host, request.source?.kind !== 'docker_image');
      throw e;
    }
    const name = `entropo-${request.sandboxId}`;
    // A retried create finds the container of its previous attempt: start over from the image.
    await this.removeContainer(name);
    const owner = newSandboxOwner(request);
    const { limits } = request;
    // Our images give the repository to an unprivileged user (SANDBOX_USER) and say so: commands run as
    // that user. Foreign images (SWE-bench, R2E-Gym) keep root, which owns their repository.
    const user = sandboxUserOf(imageInfo);
    let container: Docker.Container;
    try {
      container = await withDockerRetry(() =>
        this.docker.createContainer({
          name,
          Image: image,
          Cmd: ['sleep', 'infinity'],
          Entrypoint: [],
          WorkingDir: config.workdir,
          ...(user ? { User: `${user.uid}:${user.gid}` } : {}),
          Hostname: 'sandbox',
          Env: [
            'HOME=/tmp',
            'TMPDIR=/tmp',
            'LANG=C.UTF-8',
            'TERM=dumb',
            'PYTHONDONTWRITEBYTECODE=1',
            'GIT_CONFIG_NOSYSTEM=1',
          ],
          Labels: {
            [SANDBOX_LABEL]: request.sandboxId,
            'entropo.worker': owner.worker,
            'entropo.hostname': owner.hostname,
            'entropo.pid': String(owner.pid),
            'entropo.run': owner.runId,
            'entropo.workflow': owner.workflowId,
            'entropo.instance': request.instanceId,
            'entropo.created': owner.createdAt,
            ...(owner.deployment ? { 'entropo.deployment': owner.deployment } : {}),
          },
          NetworkDisabled: true,
          // The repository lives on an anonymous volume that Docker seeds from the image: writable even
          // when the rest of the image is read-only, and removed with the container.
          Volumes: { [config.workdir]: {} },
          HostConfig: {
            NetworkMode: 'none',
            Memory: limits.memoryMb * 1024 * 1024,
            MemorySwap: limits.memoryMb * 1024 * 1024,
            NanoCpus: Math.round(limits.cpus * 1e9),
            PidsLimit: limits.pids,
            ReadonlyRootfs: config.readOnlyRootfs,
            Tmpfs: { '/tmp': `rw,exec,nosuid,size=${config.tmpfsMb}m` },
            Init: true,
            SecurityOpt: ['no-new-privileges'],
          },
        }),
      );
      await withDockerRetry(() => container.start());
    } catch (e) {
      await this.removeContainer(name);
      throw new SandboxStartError(`docker could not start a sandbox from ${image}: ${daemonMessage(e)}`);
    }
    const sandbox = new DockerSandbox(
      request.sandboxId,
      container,
      config.workdir,
      image,
      user,
      this.options.execServer ?? true,
      this.options.log,
    );
    this.live.set(request.sandboxId, sandbox);
    // Our images say which commit they hold: check it. Foreign images (SWE-bench, R2E-Gym) are trusted.
    const imageCommit = imageInfo.Config?.Labels?.['entropo.base_commit'];
    if (imageCommit && imageCommit !== request.baseCommit) {
      await this.destroy(request.sandboxId);
      throw new SandboxStartError(
        `image ${image} was built for base commit ${imageCommit}, not ${request.baseCommit}: rebuild it (entropo tasks images --force)`,
      );
    }
    const head = imageCommit
      ? await sandbox.exec('git rev-parse HEAD', { timeoutSec: 60, outputLimitBytes: 4096 })
      : undefined;
    if (head && (head.exitCode !== 0 || !head.stdout.trim().startsWith(request.baseCommit.slice(0, 7)))) {
      await this.destroy(request.sandboxId);
      throw new SandboxStartError(
        `image ${image} does not hold the repository at ${request.baseCommit} in ${config.workdir}: ` +
          `git rev-parse HEAD said ${JSON.stringify(`${head.stdout}${head.stderr}`.trim().slice(0, 300))}`,
      );
    }
    return sandbox;
  }

  private async removeContainer(nameOrId: string): Promise<void> {
    try {
      await withDockerRetry(() => this.docker.getContainer(nameOrId).remove({ force: true, v: true }));
    } catch (e) {
      if (!isNotFoundError(e) && !/removal of container .* is already in progress/i.test(daemonMessage(e)))
        throw e;
    }
  }

  async destroy(sandboxId: string): Promise<void> {
    this.live.delete(sandboxId);
    await this.removeContainer(`entropo-${sandboxId}`);
  }

  async destroyAll(): Promise<void> {
    await Promise.all([...this.live.keys()].map((id) => this.destroy(id)));
  }

  /** Containers of this backend's engine that carry our label, with their owners. */
  async listManaged(): Promise<{ id: string; sandboxId: string; owner: SandboxOwner; ageMs: number }[]> {
    const containers = await withDockerRetry(() =>
      this.docker.listContainers({ all: true, filters: { label: [SANDBOX_LABEL] } }),
    );
    return containers.map((c) => ({
      id: c.Id,
      sandboxId: c.Labels[SANDBOX_LABEL] ?? '',
      owner: {
        worker: c.Labels['entropo.worker'] ?? '',
        hostname: c.Labels['entropo.hostname'] ?? '',
        pid: Number(c.Labels['entropo.pid'] ?? 0),
        runId: c.Labels['entropo.run'] ?? '',
        workflowId: c.Labels['entropo.workflow'] ?? '',
        createdAt: c.Labels['entropo.created'] ?? '',
        ...(c.Labels['entropo.deployment'] ? { deployment: c.Labels['entropo.deployment'] } : {}),
      },
      ageMs: Date.now() - c.Created * 1000,
    }));
  }

  /**
   * Removes this engine's orphan containers (see `isOrphan`), those this backend holds included when their
   * workflow has closed; other deployments' containers are judged only by whether their worker is alive.
   */
  async sweepOrphans(scope: SweepScope = {}): Promise<string[]> {
    const removed: string[] = [];
    for (const c of await this.listManaged()) {
      if (!(await isOrphan(c.owner.hostname ? c.owner : undefined, scope, c.ageMs))) continue;
      if (this.live.has(c.sandboxId)) await this.destroy(c.sandboxId);
      else await this.removeContainer(c.id);
      removed.push(c.sandboxId);
    }
    return removed;
  }
}
