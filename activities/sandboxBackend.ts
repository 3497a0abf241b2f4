import * as os from 'node:os';
import type { CappedOutput } from '../domain/cappedOutput';
import type { InstanceSource } from '../domain/instance';
import type { DockerConfig, SandboxBackendName, SandboxLimits } from '../domain/runConfig';
import { judgeSandbox } from '../domain/sandboxOrphans';

/**
 * What every sandbox backend offers (local bubblewrap, docker). Agent tools and grading are written against
 * these primitives only, so each tool call and each grading run can go to either backend.
 */

export interface ExecOptions {
  timeoutSec: number;
  outputLimitBytes: number;
  /** What the command reads on its stdin. */
  stdin?: string | Buffer;
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

/** The result of a command whose output was collected in `stdout` / `stderr`, started at `started`. */
export function execResult(
  outputs: { stdout: CappedOutput; stderr: CappedOutput },
  outcome: { exitCode: number | null; timedOut: boolean; started: number },
): ExecResult {
  return {
    exitCode: outcome.exitCode,
    stdout: outputs.stdout.text(),
    stderr: outputs.stderr.text(),
    timedOut: outcome.timedOut,
    durationMs: Math.round(performance.now() - outcome.started),
    stdoutCutBytes: outputs.stdout.cutBytes,
    stderrCutBytes: outputs.stderr.cutBytes,
  };
}

/**
 * Calls `kill` when the command's time is up or its signal aborts. `killed()`: whether either happened (the
 * result then has no exit code); `timedOut()`: whether it was the time; `stop()` ends the watch.
 */
export function watchForKill(
  options: Pick<ExecOptions, 'timeoutSec' | 'signal'>,
  kill: () => void,
): { killed(): boolean; timedOut(): boolean; stop(): void } {
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    kill();
  }, options.timeoutSec * 1000);
  const onAbort = () => kill();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  if (options.signal?.aborted) kill();
  return {
    killed: () => timedOut || options.signal?.aborted === true,
    timedOut: () => timedOut,
    stop: () => {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
    },
  };
}

export interface Sandbox {
  readonly id: string;
  readonly backend: SandboxBackendName;
  /** Absolute path of the repository as commands inside the sandbox see it (their working directory). */
  readonly repoPath: string;
  /** Runs a bash command in the repository root. Never throws for the command's own failure. */
  exec(command: string, options: ExecOptions): Promise<ExecResult>;
  /** Writes a file at a repository-relative path, creating directories; refuses paths outside the repository. */
  writeFile(relative: string, content: string | Buffer): Promise<void>;
  readFile(relative: string): Promise<Buffer>;
  /** Puts a file in the sandbox's private /tmp (e.g. a patch to apply); returns its path inside the sandbox. */
  writeTmpFile(name: string, content: string | Buffer): Promise<string>;
}

/** Who made a sandbox: the sweeper removes sandboxes whose owner or rollout is gone. */
export interface SandboxOwner {
  /** `<hostname>-<pid>` of the worker holding it. */
  worker: string;
  hostname: string;
  pid: number;
  runId: string;
  /** The workflow (rollout or grading) the sandbox belongs to. */
  workflowId: string;
  createdAt: string;
  /** The deployment (see `deploymentKey`) whose worker made it; absent on sandboxes of older versions. */
  deployment?: string;
}

/** The owner record of a sandbox this process creates. */
export function newSandboxOwner(
  request: Pick<CreateSandboxRequest, 'runId' | 'workflowId' | 'deployment'>,
): SandboxOwner {
  return {
    worker: `${os.hostname()}-${process.pid}`,
    hostname: os.hostname(),
    pid: process.pid,
    runId: request.runId ?? '',
    workflowId: request.workflowId ?? '',
    createdAt: new Date().toISOString(),
    ...(request.deployment ? { deployment: request.deployment } : {}),
  };
}

/** What a sweep judges with: the sweeper's deployment and a way to ask its Temporal about a workflow. */
export interface SweepScope {
  /** The sweeper's deployment; without it only sandboxes of dead workers on this host are removed. */
  deployment?: string;
  /** Whether a workflow of the sweeper's own deployment is still open. */
  isWorkflowOpen?: (workflowId: string) => Promise<boolean>;
}

/**
 * Whether a sandbox is an orphan (see `judgeSandbox` for the rule): its owner record is missing, its worker
 * on this host is dead, or it is this deployment's and its workflow is no longer open. `ageMs`: how long
 * ago the sandbox was made, for sandboxes without an owner record.
 */
export async function isOrphan(
  owner: Pick<SandboxOwner, 'hostname' | 'pid' | 'workflowId' | 'deployment'> | undefined,
  scope: SweepScope = {},
  ageMs?: number,
): Promise<boolean> {
  const judged = judgeSandbox(
    owner,
    { hostname: os.hostname(), pid: process.pid, deployment: scope.deployment, isPidAlive: isAlive },
    ageMs,
  );
  if (judged.verdict !== 'ask-workflow') return judged.verdict === 'orphan';
  return scope.isWorkflowOpen ? !(await scope.isWorkflowOpen(judged.workflowId)) : false;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export interface CreateSandboxRequest {
  sandboxId: string;
  instanceId: string;
  source?: InstanceSource;
  baseCommit: string;
  /** The image for the docker backend (see `taskImageName`). */
  image?: string;
  runId?: string;
  workflowId?: string;
  /** The deployment of the worker creating it (recorded in the owner record; the sandbox pool sets it). */
  deployment?: string;
  limits: SandboxLimits;
  docker?: DockerConfig;
}

export interface SandboxBackend {
  readonly name: SandboxBackendName;
  create(request: CreateSandboxRequest): Promise<Sandbox>;
  /** The sandbox if this worker holds it. */
  find(sandboxId: string): Sandbox | undefined;
  destroy(sandboxId: string): Promise<void>;
  destroyAll(): Promise<void>;
  /**
   * Removes sandboxes whose owning worker is gone (same host, process dead), and sandboxes of the scope's
   * deployment whose workflow is no longer open — those this worker holds included. Other deployments'
   * sandboxes are never judged by their workflow. Returns the ids removed.
   */
  sweepOrphans(scope?: SweepScope): Promise<string[]>;
}

/** A sandbox id: letters, digits, `.`, `_`, `-`, so it is safe in paths and container names. */
export function assertSandboxId(id: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$/.test(id)) throw new Error(`bad sandbox id ${JSON.stringify(id)}`);
}

/** Names a file in the sandbox's /tmp; refuses names that could point elsewhere. */
export function assertTmpName(name: string): void {
  if (name.includes('/') || name.startsWith('.') || name === '')
    throw new Error(`bad tmp file name ${JSON.stringify(name)}`);
}

/**
 * The working tree's diff against `baseCommit`, new files and binary changes included, without touching
 * the repository's own index (a throw-away index in /tmp takes the `git add -A`).
 */
export async function readWorkingTreeDiff(
  sandbox: Sandbox,
  baseCommit: string,
  options: { timeoutSec: number; outputLimitBytes: number },
): Promise<string> {
  if (!/^[0-9a-f]{7,40}$/.test(baseCommit)) throw new Error(`bad base commit ${baseCommit}`);
  const index = `/tmp/.entropo-diff-index-${process.pid}-${Date.now()}`;
  const result = await sandbox.exec(
    `set -e; export GIT_INDEX_FILE=${index}; rm -f ${index}; git read-tree ${baseCommit}; ` +
      `git add -A; git -c core.quotepath=off diff --cached --binary ${baseCommit}; rm -f ${index}`,
    options,
  );
  if (result.exitCode !== 0 || result.stdoutCutBytes > 0) {
    throw new Error(
      result.stdoutCutBytes > 0
        ? `the diff is larger than ${options.outputLimitBytes} bytes`
        : `git diff failed (exit ${result.exitCode}): ${result.stderr.slice(0, 2000)}`,
    );
  }
  return result.stdout;
}
