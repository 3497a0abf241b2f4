import type { SandboxBackendName } from '../domain/runConfig';
import { DockerSandboxBackend } from './dockerSandbox';
import { LocalSandboxBackend } from './localSandbox';
import type { CreateSandboxRequest, Sandbox, SandboxBackend } from './sandboxBackend';

/**
 * The sandboxes one sandbox worker holds, on whichever backend each was made: the local one, and a docker
 * backend per Docker engine address (made on first use, so a worker without Docker still serves local runs).
 */
export class SandboxPool {
  private readonly dockers = new Map<string, DockerSandboxBackend>();
  /** Engines already reported as not answering, so each is reported once. */
  private readonly silentEngines = new Set<string>();

  constructor(
    readonly local: LocalSandboxBackend = new LocalSandboxBackend(),
    private readonly log: (line: string) => void = () => {},
    /**
     * The deployment this pool's worker belongs to (`deploymentKey`): recorded on every sandbox it makes, and
     * the only deployment whose sandboxes its sweeps judge by their workflow.
     */
    readonly deployment?: string,
  ) {}

  /** The docker backend for an engine address (`undefined`: the worker's DOCKER_HOST or local socket). */
  docker(host?: string): DockerSandboxBackend {
    const key = host ?? '';
    let backend = this.dockers.get(key);
    if (!backend) {
      backend = new DockerSandboxBackend({ host });
      this.dockers.set(key, backend);
    }
    return backend;
  }

  create(backend: SandboxBackendName, request: CreateSandboxRequest): Promise<Sandbox> {
    if (this.deployment && !request.deployment) request = { ...request, deployment: this.deployment };
    return backend === 'docker'
      ? this.docker(request.docker?.host).create(request)
      : this.local.create(request);
  }

  private backends(): SandboxBackend[] {
    return [this.local, ...this.dockers.values()];
  }

  get(sandboxId: string): Sandbox {
    for (const backend of this.backends()) {
      const sandbox = backend.find(sandboxId);
      if (sandbox) return sandbox;
    }
    throw new Error(`sandbox ${sandboxId} is not held by this worker (pid ${process.pid})`);
  }

  async destroy(sandboxId: string): Promise<void> {
    const holder = this.backends().find((b) => b.find(sandboxId));
    // Not held (a retried destroy, or a sandbox of an earlier process): remove it wherever it may be.
    await Promise.all((holder ? [holder] : this.backends()).map((b) => b.destroy(sandboxId)));
  }

  async destroyAll(): Promise<void> {
    await Promise.all(this.backends().map((b) => b.destroyAll()));
  }

  /**
   * Removes sandboxes of vanished workers on every backend, and sandboxes of this pool's deployment whose
   * workflow is no longer open (`isWorkflowOpen` asks this deployment's Temporal) — those this worker still
   * holds included, so a sandbox abandoned by a restarted grading does not stay until the worker stops.
   * The default Docker engine is swept when one answers; when none does, that is said once and local
   * sweeping goes on.
   */
  async sweepOrphans(isWorkflowOpen?: (workflowId: string) => Promise<boolean>): Promise<string[]> {
    const scope = { deployment: this.deployment, isWorkflowOpen };
    const removed = await this.local.sweepOrphans(scope);
    this.docker(); // the default engine is swept even before this worker made a docker sandbox
    for (const backend of this.dockers.values()) {
      try {
        await backend.ping(1); // no retry: a worker without Docker must start without delay
      } catch (e) {
        if (!this.silentEngines.has(backend.host))
          this.log(`${(e as Error).message} (docker sandboxes not swept)`);
        this.silentEngines.add(backend.host);
        continue;
      }
      removed.push(...(await backend.sweepOrphans(scope)));
    }
    return removed;
  }
}
