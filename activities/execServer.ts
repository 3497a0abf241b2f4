import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Readable, Writable } from 'node:stream';
import { CappedOutput } from '../domain/cappedOutput';
import { type ExecOptions, type ExecResult, execResult, watchForKill } from './sandboxBackend';

/**
 * The worker's side of a sandbox's exec server (`execServer.py`): one long-lived process inside the
 * sandbox that runs its commands, so a command costs a fork there instead of a new bwrap namespace or a
 * `docker exec`. The backend starts the server inside the sandbox and hands over its stdin and stdout;
 * this class speaks the protocol the script's docstring describes, one command at a time.
 */

/** The server's source, passed to `python -c` (no file to place inside the sandbox). */
export const EXEC_SERVER_SCRIPT = fs.readFileSync(path.join(__dirname, 'execServer.py'), 'utf8');

/** The arguments that start the server with the sandbox's Python: isolated, no site packages. */
export function execServerArgv(python: string): string[] {
  return [python, '-I', '-S', '-c', EXEC_SERVER_SCRIPT];
}

/** A sink that keeps the last `limit` characters written to it: a server's stderr, for error messages. */
export function stderrTail(limit = 4000): { sink: Writable; text(): string } {
  let tail = '';
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      tail = (tail + chunk.toString('utf8')).slice(-limit);
      done();
    },
  });
  return { sink, text: () => tail };
}

/** A started server process, as the backend sees it. */
export interface ExecServerProcess {
  /** Its stdin: requests. */
  input: Writable;
  /** Its stdout: frames. */
  output: Readable;
  /** The last of what it wrote on stderr (for errors). */
  stderrTail(): string;
  /**
   * Ends the server and everything it started in the sandbox, for when it does not answer a kill in time
   * (local: its namespace dies; docker: the container restarts). Resolves when that is done.
   */
  destroy(): Promise<void>;
  /** Cleans up after a server that never became ready (local: its bwrap; docker: nothing to do). */
  discard?(): Promise<void>;
}

/** How long a command may take to end after a kill before the whole server is destroyed instead. */
const KILL_GRACE_MS = 30_000;

export class ExecServerStartError extends Error {
  override name = 'ExecServerStartError';
}

interface Pending {
  stdout: CappedOutput;
  stderr: CappedOutput;
  resolve(exit: { code: number | null }): void;
}

export class ExecServer {
  private buffered: Buffer = Buffer.alloc(0);
  private pending: Pending | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private ready: Promise<void>;
  private ended = false;

  private constructor(private readonly process: ExecServerProcess) {
    let onReady: () => void = () => {};
    let onFail: (e: Error) => void = () => {};
    this.ready = new Promise<void>((resolve, reject) => {
      onReady = resolve;
      onFail = reject;
    });
    process.output.on('data', (chunk: Buffer) => this.receive(chunk, onReady));
    const end = () => {
      if (this.ended) return;
      this.ended = true;
      onFail(new ExecServerStartError(`the exec server ended before it was ready: ${process.stderrTail()}`));
      this.pending?.resolve({ code: null });
      this.pending = undefined;
    };
    process.output.once('end', end);
    process.output.once('close', end);
    process.output.once('error', end);
    process.input.on('error', () => {}); // a dead server shows as the output's end
  }

  /** Starts using a server process; resolves once it said it is ready, or throws ExecServerStartError. */
  static async open(process: ExecServerProcess): Promise<ExecServer> {
    const server = new ExecServer(process);
    await server.ready;
    return server;
  }

  /** False once the server process is gone (the next command needs a new one). */
  get alive(): boolean {
    return !this.ended;
  }

  /** Runs one command (argv, no shell of ours around it); commands queue behind each other. */
  run(argv: string[], options: ExecOptions): Promise<ExecResult> {
    const result = this.queue.then(() => this.runNow(argv, options));
    this.queue = result.catch(() => undefined);
    return result;
  }

  private async runNow(argv: string[], options: ExecOptions): Promise<ExecResult> {
    const started = performance.now();
    const stdout = new CappedOutput(options.outputLimitBytes);
    const stderr = new CappedOutput(options.outputLimitBytes);
    const finished = (exitCode: number | null, timedOut: boolean): ExecResult =>
      execResult({ stdout, stderr }, { exitCode, timedOut, started });
    if (this.ended) return finished(null, false);
    const exit = new Promise<{ code: number | null }>((resolve) => {
      this.pending = { stdout, stderr, resolve };
    });
    // The request first: a `kill` before it would be read as a late one and ignored.
    const stdin = options.stdin ? Buffer.from(options.stdin).toString('base64') : '';
    this.process.input.write(`${JSON.stringify({ argv, stdin })}\n`);
    let grace: NodeJS.Timeout | undefined;
    let destroying: Promise<void> | undefined;
    const watch = watchForKill(options, () => {
      if (grace || this.ended) return;
      this.process.input.write('kill\n');
      // A server that cannot finish the kill (it should never happen) is destroyed with the sandbox's processes.
      grace = setTimeout(() => {
        destroying = this.process.destroy();
      }, KILL_GRACE_MS);
    });
    try {
      const { code } = await exit;
      await destroying;
      return finished(watch.killed() ? null : code, watch.timedOut());
    } finally {
      watch.stop();
      clearTimeout(grace);
      this.pending = undefined;
    }
  }

  /** Parses frames (kind byte, 4-byte big-endian length, payload) as they arrive. */
  private receive(chunk: Buffer, onReady: () => void): void {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    while (this.buffered.length >= 5) {
      const length = this.buffered.readUInt32BE(1);
      if (this.buffered.length < 5 + length) return;
      const kind = String.fromCharCode(this.buffered[0]!);
      const payload = this.buffered.subarray(5, 5 + length);
      this.buffered = this.buffered.subarray(5 + length);
      if (kind === 'o') this.pending?.stdout.push(payload);
      else if (kind === 'e') this.pending?.stderr.push(payload);
      else if (kind === 'x') {
        const { code } = JSON.parse(payload.toString('utf8')) as { code: number | null };
        const pending = this.pending;
        this.pending = undefined;
        pending?.resolve({ code });
      } else if (kind === 'r') onReady();
    }
  }

  /** Ends the server (its sandbox's processes with it). */
  async close(): Promise<void> {
    if (this.ended) return;
    this.process.input.end();
    await this.process.destroy();
  }
}

/**
 * A sandbox's exec server, started on first use and again after it died; `undefined` from the first time it
 * cannot start (the sandbox then runs each command the old way).
 */
export class LazyExecServer {
  private server: ExecServer | undefined;
  private starting: Promise<ExecServer | undefined> | undefined;
  private broken = false;

  constructor(
    private readonly start: () => Promise<ExecServerProcess>,
    /** Told why, when the server cannot start. */
    private readonly onFailure: (message: string) => void,
  ) {}

  async get(): Promise<ExecServer | undefined> {
    if (this.server?.alive) return this.server;
    if (this.broken) return undefined;
    this.starting ??= this.open().finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  private async open(): Promise<ExecServer | undefined> {
    let process: ExecServerProcess | undefined;
    try {
      process = await this.start();
      this.server = await ExecServer.open(process);
      return this.server;
    } catch (e) {
      await process?.discard?.();
      this.broken = true;
      this.onFailure(e instanceof Error ? e.message : String(e));
      return undefined;
    }
  }

  /** Ends the server, if one runs (its sandbox's processes with it). */
  async close(): Promise<void> {
    await this.starting;
    await this.server?.close();
  }
}
