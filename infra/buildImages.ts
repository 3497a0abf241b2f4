/**
 * Docker images without a registry. No registry is reachable from these machines, so:
 *   base   – a minimal Debian bookworm root filesystem (python3, pytest, git) made with `debootstrap` and
 *            loaded with `docker import` as `entropo/base:bookworm` (needs root and the Debian mirror);
 *   tasks  – one image per instance whose code comes from a local git repository or tarball, named as
 *            SWE-bench names instance images (`sweb.eval.x86_64.<instance id>:latest`), built on the base
 *            with the network off, the repository at its base commit in /testbed (no later history).
 *
 *   node --import tsx infra/buildImages.ts base [--force]
 *   node --import tsx infra/buildImages.ts tasks <instances.jsonl> [--force]
 *
 * Existing images are kept unless --force. The Docker engine is the worker's (DOCKER_HOST or the socket);
 * ENTROPO_DEBIAN_MIRROR names a Debian mirror for debootstrap.
 */
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import Docker from 'dockerode';
import { dockerConnection, SANDBOX_USER_LABEL, withDockerRetry } from '../activities/dockerSandbox';
import { materializeRepo, SANDBOX_USER } from '../activities/localSandbox';
import { entropoHome } from '../activities/paths';
import { isNotFoundError } from '../domain/dockerErrors';
import { parseInstancesOrThrow, type TaskInstance, taskImageName } from '../domain/instance';

export const BASE_IMAGE = 'entropo/base:bookworm';
const BASE_PACKAGES = ['python3', 'python3-pytest', 'git', 'patch', 'python-is-python3'];
const REPO_DIR = '/testbed';

type Log = (line: string) => void;

function docker(): Docker {
  return new Docker(dockerConnection(process.env.DOCKER_HOST));
}

/** The image's inspect record, or undefined when the engine does not have it. */
async function inspectImage(client: Docker, name: string): Promise<Docker.ImageInspectInfo | undefined> {
  try {
    return await withDockerRetry(() => client.getImage(name).inspect());
  } catch (e) {
    if (isNotFoundError(e)) return undefined;
    throw e;
  }
}

export async function imageExists(client: Docker, name: string): Promise<boolean> {
  return (await inspectImage(client, name)) !== undefined;
}

/** Waits for a build/import progress stream; throws with the daemon's message on a failed step. */
function followProgress(client: Docker, stream: NodeJS.ReadableStream, log: Log): Promise<void> {
  return new Promise((resolve, reject) => {
    client.modem.followProgress(
      stream,
      (err: Error | null, events: { error?: string }[]) => {
        const failed = events?.find((e) => e.error);
        if (err || failed) reject(err ?? new Error(failed!.error));
        else resolve();
      },
      (event: { stream?: string; status?: string }) => {
        const line = (event.stream ?? event.status ?? '').trim();
        if (line) log(`  ${line}`);
      },
    );
  });
}

function mirror(): string[] {
  return process.env.ENTROPO_DEBIAN_MIRROR ? [process.env.ENTROPO_DEBIAN_MIRROR] : [];
}

/** debootstrap a minimal bookworm with python3, pytest and git, and `docker import` it. About a minute. */
export async function buildBaseImage(options: { force?: boolean; log?: Log } = {}): Promise<void> {
  const log = options.log ?? console.log;
  const client = docker();
  if (!options.force && (await imageExists(client, BASE_IMAGE))) {
    log(`${BASE_IMAGE}: present`);
    return;
  }
  if (process.getuid?.() !== 0) {
    throw new Error(`building ${BASE_IMAGE} needs root (debootstrap); run this script as root`);
  }
  try {
    execFileSync('debootstrap', ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error('debootstrap is not installed: `apt-get install -y debootstrap`');
  }
  const rootfs = path.join(entropoHome(), 'images', 'rootfs-bookworm');
  fs.rmSync(rootfs, { recursive: true, force: true });
  fs.mkdirSync(path.dirname(rootfs), { recursive: true });
  log(`${BASE_IMAGE}: debootstrap bookworm (${BASE_PACKAGES.join(', ')}) into ${rootfs}`);
  const started = performance.now();
  execFileSync(
    'debootstrap',
    // ENTROPO_DEBIAN_MIRROR: a mirror other than debootstrap's default (deb.debian.org).
    ['--variant=minbase', `--include=${BASE_PACKAGES.join(',')}`, 'bookworm', rootfs, ...mirror()],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  log(`${BASE_IMAGE}: importing into docker`);
  const tarProcess = spawn('tar', ['-C', rootfs, '-c', '.'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [repo, tag] = BASE_IMAGE.split(':') as [string, string];
  const stream = await client.importImage(tarProcess.stdout, { repo, tag });
  await followProgress(client, stream, () => {});
  fs.rmSync(rootfs, { recursive: true, force: true });
  log(`${BASE_IMAGE}: built in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

/**
 * Builds the image of one instance from its git or tarball source: the base image plus the repository at
 * the base commit in /testbed. Returns the image name.
 */
export async function buildTaskImage(
  instance: TaskInstance,
  options: { force?: boolean; log?: Log } = {},
): Promise<string> {
  const log = options.log ?? console.log;
  const client = docker();
  const image = taskImageName(instance);
  if (!instance.source || instance.source.kind === 'docker_image') {
    throw new Error(`instance ${instance.instance_id} names its image (${image}); there is nothing to build`);
  }
  const existing = options.force ? undefined : await inspectImage(client, image);
  const sandboxUser = `${SANDBOX_USER.uid}:${SANDBOX_USER.gid}`;
  if (existing) {
    const labels = existing.Config?.Labels ?? {};
    if (
      labels['entropo.base_commit'] === instance.base_commit &&
      labels[SANDBOX_USER_LABEL] === sandboxUser
    ) {
      log(`${image}: present`);
      return image;
    }
    log(
      labels['entropo.base_commit'] === instance.base_commit
        ? `${image}: made before sandboxes ran unprivileged; rebuilding`
        : `${image}: holds another base commit; rebuilding`,
    );
  }
  if (!(await imageExists(client, BASE_IMAGE))) await buildBaseImage({ log });
  const context = fs.mkdtempSync(path.join(entropoHome(), 'image-context-'));
  try {
    await materializeRepo(instance.source, path.join(context, 'repo'), instance.base_commit);
    // The repository belongs to the unprivileged user sandbox commands run as (DockerSandboxBackend reads
    // the label), who gets a name in /etc/passwd for tools that look one up (git, whoami).
    const { name, uid, gid } = SANDBOX_USER;
    fs.writeFileSync(
      path.join(context, 'Dockerfile'),
      `FROM ${BASE_IMAGE}\n` +
        `RUN echo '${name}:x:${uid}:${gid}:entropo sandbox:/tmp:/bin/bash' >> /etc/passwd && echo '${name}:x:${gid}:' >> /etc/group\n` +
        `COPY --chown=${uid}:${gid} repo ${REPO_DIR}\nWORKDIR ${REPO_DIR}\n`,
    );
    const stream = await client.buildImage(
      { context, src: ['Dockerfile', 'repo'] },
      {
        t: image,
        networkmode: 'none',
        rm: true,
        forcerm: true,
        labels: {
          'entropo.instance': instance.instance_id,
          'entropo.base_commit': instance.base_commit,
          [SANDBOX_USER_LABEL]: sandboxUser,
        },
      },
    );
    await followProgress(client, stream, () => {});
  } finally {
    fs.rmSync(context, { recursive: true, force: true });
  }
  log(`${image}: built`);
  return image;
}

/** Builds the images of every instance in a file whose code comes from a local repository or tarball. */
export async function buildTaskImages(
  file: string,
  options: { force?: boolean; log?: Log } = {},
): Promise<string[]> {
  const absolute = path.resolve(file);
  const instances = parseInstancesOrThrow(fs.readFileSync(absolute, 'utf8'), file);
  const images: string[] = [];
  for (const instance of instances) {
    if (!instance.source || instance.source.kind === 'docker_image') continue;
    const source = { ...instance.source, path: path.resolve(path.dirname(absolute), instance.source.path) };
    images.push(await buildTaskImage({ ...instance, source }, options));
  }
  return images;
}

async function main(argv: string[]): Promise<void> {
  const force = argv.includes('--force');
  const args = argv.filter((a) => a !== '--force');
  if (args[0] === 'base' && args.length === 1) {
    await buildBaseImage({ force });
  } else if (args[0] === 'tasks' && args.length === 2) {
    await buildTaskImages(args[1]!, { force });
  } else {
    console.error('usage: buildImages.ts base [--force] | tasks <instances.jsonl> [--force]');
    process.exit(2);
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((e) => {
    console.error(`error: ${(e as Error).message}`);
    process.exit(1);
  });
}
