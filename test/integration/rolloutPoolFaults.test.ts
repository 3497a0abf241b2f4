import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Client, Connection, WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArtifactStore } from '../../activities/artifacts';
import type { TrajectoryRecord } from '../../domain/agent/trajectory';
import { canonicalJson } from '../../domain/canonicalJson';
import { call } from '../../domain/demonstrator';
import type {
  PoolSummary,
  RolloutOutcome,
  RolloutPoolConfigInput,
  RolloutPoolProgress,
} from '../../domain/rolloutPool';
import type { WorkerRole } from '../../domain/taskQueues';
import { type DevServer, freePort, startDevServer } from '../../infra/devServer';
import type { RolloutPoolResult } from '../../workflows/rolloutPool';
import { sandboxIdFor } from '../../workflows/sandboxes';
import { fixtureInstances, isolatedHome, writeInstances } from '../helpers/env';
import { EDIT, SUBMIT } from '../helpers/pipelineRun';
import { apiError, type ScriptedOpenAI, startScriptedOpenAI } from '../helpers/scriptedOpenAI';
import { quietRuntime, sandboxDirs, startWorkerProcess } from '../helpers/temporal';
import { comparableTrajectory } from '../helpers/trajectories';

/**
 * A rollout pool under faults, on a real dev server with one real worker process per role (cpu, sandbox,
 * llm) and real bwrap sandboxes:
 *   1. every worker and the dev server SIGKILLed while some episodes are finished and others mid-way, then
 *      restarted: the pool finishes, the finished episodes are not run again, and the trajectories equal an
 *      uninterrupted pool's;
 *   2. the model endpoint down for one episode: its calls are retried, then that episode ends with
 *      `llm_error` while the others finish and the pool completes;
 *   3. the dev server down while every episode runs a command, past the heartbeat timeout: no step runs
 *      twice, counted inside the sandboxes.
 *
 * The policy is a scripted OpenAI-compatible endpoint (outside our system) that answers every episode alike:
 *   1. a command that counts its own runs in the sandbox's /tmp ("runs of step 1: 1");
 *   2. an edit of the repository;
 *   3. a command that counts its runs, then waits at a gate (a file in the sandbox's /tmp that this test
 *      writes from the host) and shows that the edit is in place;
 *   4. finish.
 * The gate gives the tests their window: a step stays in flight until the test lets it go, instead of the
 * test racing it. The count is per step: a step run again in the same sandbox says "2"; a step re-run in a
 * new sandbox after its sandbox was lost (which is right: its result was never recorded) starts a fresh /tmp.
 */

const home = isolatedHome('pool-faults');
const PREFIX = 'pool-faults';
const ROLES: WorkerRole[] = ['cpu', 'sandbox', 'llm'];
const store = new ArtifactStore();
const tasks = fixtureInstances().slice(0, 2);
const N = 2;
const SEED = 100;
/** Episode `index` of task number `task` (the pool's seed rule: one seed per episode). */
const episodeSeed = (task: number, index: number) => SEED + task * N + index;
const EPISODES = tasks.length * N;
/**
 * ≥ 10 s where the server goes down alone (test 3): the workers' failing heartbeat reports must not cancel
 * a step during the outage (see serverOutage.test.ts).
 */
const OUTAGE_HEARTBEAT_TIMEOUT_SEC = 20;
/** How long a worker retries reporting a finished activity before it drops the report (sdk-core). */
const COMPLETION_RETRY_SEC = 10;

const countingCommand = (step: number) =>
  `echo x >> /tmp/ran-${step}; echo "runs of step ${step}: $(wc -l < /tmp/ran-${step})"`;
const GATE = 'go-3';
const SCRIPT = [
  `Let me look around.\n${call('execute_bash', { cmd: countingCommand(1) })}`,
  EDIT,
  `Is the note there?\n${call('execute_bash', {
    cmd: `${countingCommand(3)}; while [ ! -e /tmp/${GATE} ]; do sleep 0.2; done; grep -c "looked at" inflection/__init__.py`,
  })}`,
  SUBMIT,
];
const FIRST_RUNS = ['runs of step 1: 1', 'runs of step 3: 1'];

/** One model call as the endpoint saw it: which pool (by model name), episode (by seed) and turn. */
interface Call {
  model: string;
  episode: number;
  turn: number;
  at: number;
}
const calls: Call[] = [];
/** A call the endpoint holds until the test releases it (once: the same call made again is answered). */
interface Hold {
  model: string;
  episode: number;
  turn: number;
  reached: Promise<void>;
  reach(): void;
  released: Promise<void>;
  release(): void;
}
const holds: Hold[] = [];
function hold(model: string, episode: number, turn: number): Hold {
  const entry = { model, episode, turn } as Hold;
  entry.reached = new Promise<void>((r) => {
    entry.reach = r;
  });
  entry.released = new Promise<void>((r) => {
    entry.release = r;
  });
  holds.push(entry);
  return entry;
}
/** The model (pool) whose episode DOWN_EPISODE finds the endpoint down from its second call on. */
const FLAKY = 'flaky';
const DOWN_EPISODE = episodeSeed(0, 1);

let endpoint: ScriptedOpenAI;
let instancesFile: string;

// --- the cluster: a dev server and one worker process per role, each killed and started again at will ---

const dbFile = path.join(home, 'temporal.db');
let port: number;
let server: DevServer;
let connection: Connection;
let client: Client;
const started: ChildProcess[] = [];
let workers: ChildProcess[] = [];

async function startWorkers(): Promise<void> {
  workers = [];
  for (const role of ROLES)
    workers.push(
      await startWorkerProcess(server.address, { queuePrefix: PREFIX, home, started, roles: [role] }),
    );
}

async function killServer(): Promise<void> {
  process.kill(server.pid!, 'SIGKILL');
  await server.exited;
}

/** Same port, same database: the server goes on where it was killed. */
async function restartServer(): Promise<void> {
  server = await startDevServer({ port, headless: true, dbFile });
}

// --- the gates ---

const sandboxTmp = (dir: string, file: string) => path.join(home, 'sandboxes', dir, 'tmp', file);
/** Sandboxes whose gate stays shut (by directory name); every other one is opened once its step waits there. */
let gateShut: (sandboxDir: string) => boolean = () => false;
const gateOpener = setInterval(() => {
  for (const dir of sandboxDirs(home)) {
    if (gateShut(dir) || !fs.existsSync(sandboxTmp(dir, 'ran-3'))) continue;
    try {
      fs.writeFileSync(sandboxTmp(dir, GATE), '');
    } catch {
      // that sandbox is being removed
    }
  }
}, 200);
/** Sandbox directories of an episode (any restart): its sandbox ids are derived from its workflow id. */
const sandboxesOf = (rolloutId: string) => (dir: string) =>
  dir.startsWith(sandboxIdFor(rolloutId, 0).slice(0, -1));
/** Episodes waiting at their gate, counted by their sandbox. */
const atGate = () => sandboxDirs(home).filter((d) => fs.existsSync(sandboxTmp(d, 'ran-3')));

beforeAll(async () => {
  quietRuntime();
  instancesFile = writeInstances(home, tasks);
  endpoint = await startScriptedOpenAI(async (request) => {
    const messages = request.body.messages as { role: string }[];
    const turn = messages.filter((m) => m.role === 'assistant').length;
    const model = String(request.body.model);
    // The request's seed is the episode's plus its step (1-based): the episode is known from any call.
    const episode = Number(request.body.seed) - turn - 1;
    calls.push({ model, episode, turn, at: Date.now() });
    if (model === FLAKY && episode === DOWN_EPISODE && turn >= 1)
      return { status: 503, body: apiError('the model server is restarting', null, 'server_error') };
    const held = holds.find((h) => h.model === model && h.episode === episode && h.turn === turn);
    if (held) {
      holds.splice(holds.indexOf(held), 1);
      held.reach();
      await held.released;
    }
    return { body: SCRIPT[Math.min(turn, SCRIPT.length - 1)]! };
  });
  port = await freePort();
  server = await startDevServer({ port, headless: true, dbFile });
  connection = await Connection.connect({ address: server.address });
  client = new Client({ connection });
  await startWorkers();
});
afterAll(async () => {
  clearInterval(gateOpener);
  for (const w of started) w.kill('SIGKILL');
  await connection?.close().catch(() => undefined);
  await server?.stop();
  await endpoint?.close();
});

// --- pools ---

const poolId = (runId: string) => `rollouts/${runId}`;
const rolloutId = (runId: string, task: number, index: number) =>
  `${poolId(runId)}/rollout/${tasks[task]!.instance_id as string}/${index}`;

function startPool(
  runId: string,
  model: string,
  options: { heartbeatTimeoutSec: number; endpoint?: Record<string, unknown> },
) {
  const config: RolloutPoolConfigInput = {
    runId,
    instances: instancesFile,
    policy: {
      kind: 'openai',
      endpoint: {
        baseUrl: endpoint.baseUrl,
        model,
        requestTimeoutSec: 600,
        maxRetries: 0,
        ...options.endpoint,
      },
    },
    n: N,
    concurrency: EPISODES,
    seed: SEED,
    sampling: { temperature: 0 },
    limits: { maxSteps: 8, commandTimeoutSec: 600 },
    sandbox: { heartbeatTimeoutSec: options.heartbeatTimeoutSec },
    grading: { testTimeoutSec: 600 },
  };
  return client.workflow.start('rolloutPoolWorkflow', {
    taskQueue: `${PREFIX}-cpu`,
    workflowId: poolId(runId),
    args: [config],
  });
}

/** The pool's result; while the server is down, asks again once it is back. */
async function poolResult(handle: WorkflowHandle): Promise<RolloutPoolResult> {
  for (;;) {
    try {
      return (await handle.result()) as RolloutPoolResult;
    } catch (err) {
      if (err instanceof WorkflowFailedError) throw err;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

interface Summary extends PoolSummary {
  outcomes: RolloutOutcome[];
}
const summaryOf = (result: RolloutPoolResult) =>
  JSON.parse(fs.readFileSync(result.summaryPath, 'utf8')) as Summary;

/** Each episode's trajectory (timings aside), keyed by task and seed: what two runs of a pool compare. */
async function trajectories(result: RolloutPoolResult) {
  const byEpisode: Record<string, unknown> = {};
  for (const o of summaryOf(result).outcomes)
    byEpisode[`${o.instanceId}/${o.seed}`] =
      o.trajectoryId && (await comparableTrajectory(store, o.trajectoryId));
  return byEpisode;
}

async function until(what: string, condition: () => boolean | Promise<boolean>, limitSec = 900) {
  const deadline = Date.now() + limitSec * 1000; // only catches a hang
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
const sleepUntil = (time: number) => new Promise((r) => setTimeout(r, Math.max(0, time - Date.now())));

/** The activities a workflow scheduled, in order: type, step (for a step), and the attempt that ran last (0: none started). */
async function activities(workflowId: string) {
  const events = (await client.workflow.getHandle(workflowId).fetchHistory()).events ?? [];
  const scheduled = new Map<string, { type: string; step?: number; attempts: number }>();
  for (const e of events) {
    const s = e.activityTaskScheduledEventAttributes;
    if (s) {
      const input = JSON.parse(Buffer.from(s.input?.payloads?.[0]?.data ?? []).toString('utf8') || '{}');
      scheduled.set(String(e.eventId), {
        type: s.activityType?.name ?? '?',
        step: input.stepIndex,
        attempts: 0,
      });
    }
    const startedEvent = e.activityTaskStartedEventAttributes;
    const activity = scheduled.get(String(startedEvent?.scheduledEventId ?? ''));
    if (activity) activity.attempts = startedEvent!.attempt ?? 1;
  }
  return [...scheduled.values()];
}
/** An episode's step `step` each time it was scheduled (again in a new sandbox after a lost one): its attempts. */
const stepAttempts = async (workflowId: string, step: number) =>
  (await activities(workflowId))
    .filter((a) => a.type === 'runAgentStep' && a.step === step)
    .map((a) => a.attempts);
/** Sandboxes an episode made for itself: more than one means it lost one and went on in another. */
const sandboxesMade = async (workflowId: string) =>
  (await activities(workflowId)).filter((a) => a.type === 'createSandbox').length;

describe('a rollout pool under faults', () => {
  let reference: Record<string, unknown>;

  it('an uninterrupted pool (the reference)', async () => {
    gateShut = () => false;
    const handle = await startPool('reference', 'scripted', { heartbeatTimeoutSec: 10 });
    const result = await poolResult(handle);
    expect(result).toMatchObject({ rollouts: EPISODES, failed: 0 });
    expect(summaryOf(result).exitReasons).toEqual({ submitted: EPISODES });
    reference = await trajectories(result);
    // Each step ran once, and the edit was in place when step 3 looked.
    for (const t of Object.values(reference) as Awaited<ReturnType<typeof comparableTrajectory>>[]) {
      expect(t.steps).toHaveLength(SCRIPT.length);
      expect(t.steps[0]!.observation).toContain(FIRST_RUNS[0]);
      expect(t.steps[2]!.observation).toContain(FIRST_RUNS[1]);
      expect(t.patch).toContain('# looked at');
    }
    expect(sandboxDirs(home)).toEqual([]);
  });

  it('every worker and the dev server SIGKILLed mid-pool, then restarted: finished episodes are not run again, the trajectories equal the reference', async () => {
    const runId = 'killed';
    const model = 'scripted';
    // Task 0's episodes run to their end. Task 1's stop mid-way: episode 0 waits for its fourth reply (its
    // call in flight on the llm worker), episode 1 at its third step's gate (the sandbox worker busy).
    const waitingForModel = hold(model, episodeSeed(1, 0), 3);
    const inStep = sandboxesOf(rolloutId(runId, 1, 1));
    gateShut = inStep;
    const handle = await startPool(runId, model, { heartbeatTimeoutSec: 10 });
    await waitingForModel.reached;
    await until('task 1 episode 1 to wait in its third step', () => atGate().some(inStep));
    await until('task 0 episodes to finish', async () => {
      const progress = await handle.query<RolloutPoolProgress>('progress');
      return progress.done === N;
    });
    const finished = [rolloutId(runId, 0, 0), rolloutId(runId, 0, 1)];
    for (const id of finished)
      expect((await client.workflow.getHandle(id).describe()).status.name).toBe('COMPLETED');

    for (const w of workers) w.kill('SIGKILL');
    await killServer();
    const killedAt = Date.now();
    waitingForModel.release(); // the dead worker's call gets its answer, which nobody reads
    gateShut = () => false;
    await new Promise((r) => setTimeout(r, 2000));
    await restartServer();
    await startWorkers();
    const result = await poolResult(handle);

    expect(result).toMatchObject({ rollouts: EPISODES, failed: 0 });
    expect(await trajectories(result)).toEqual(reference);
    // The finished episodes were not run again: one execution each, closed before the kill, and not one
    // model call after it.
    for (const id of finished) {
      const executions = [];
      for await (const e of client.workflow.list({ query: `WorkflowId = "${id}"` })) executions.push(e);
      expect(executions, id).toHaveLength(1);
      expect(executions[0]!.closeTime!.getTime(), id).toBeLessThan(killedAt);
    }
    const after = calls.filter((c) => c.model === model && c.at > killedAt);
    expect(after.filter((c) => c.episode === episodeSeed(0, 0) || c.episode === episodeSeed(0, 1))).toEqual(
      [],
    );
    // The kill interrupted the others: the held call was made again, once; the step waiting at its gate
    // was re-run in a new sandbox holding the checkpoint (its trajectory shows the edit in place).
    expect(after.filter((c) => c.episode === episodeSeed(1, 0)).map((c) => c.turn)).toEqual([3]);
    expect(await sandboxesMade(rolloutId(runId, 1, 1))).toBe(2);
    expect(await stepAttempts(rolloutId(runId, 1, 1), 3)).toHaveLength(2);
    expect(sandboxDirs(home)).toEqual([]);
  });

  it('the model endpoint down for one episode: retried, then llm_error for that episode only; the pool completes', async () => {
    gateShut = () => false;
    const before = calls.length;
    const handle = await startPool('endpoint-down', FLAKY, {
      heartbeatTimeoutSec: 10,
      // Each call: 2 attempts of 1 + 1 requests; small waits, so the test is quick.
      endpoint: { maxRetries: 1, callAttempts: 2, callRetryIntervalSec: 1 },
    });
    const result = await poolResult(handle);
    expect(result).toMatchObject({ rollouts: EPISODES, failed: 0 });
    const summary = summaryOf(result);
    expect(summary.exitReasons).toEqual({ submitted: EPISODES - 1, llm_error: 1 });
    const down = summary.outcomes.find((o) => o.seed === DOWN_EPISODE)!;
    expect(down).toMatchObject({ exitReason: 'llm_error', steps: 1, resolved: false });
    const record = await store.getJson<TrajectoryRecord>(down.trajectoryId!);
    expect(record.exitReason).toBe('llm_error');
    expect(record.exitDetail).toMatch(/LLM endpoint unavailable.*2 attempt\(s\).*503/s);
    for (const o of summary.outcomes.filter((o) => o.seed !== DOWN_EPISODE))
      expect(o, String(o.seed)).toMatchObject({ exitReason: 'submitted', steps: SCRIPT.length });
    // The failing call was tried callAttempts × (1 + maxRetries) times, and no call came after it.
    const downCalls = calls.slice(before).filter((c) => c.episode === DOWN_EPISODE);
    expect(downCalls.map((c) => c.turn)).toEqual([0, 1, 1, 1, 1]);
    const progress = await handle.query<RolloutPoolProgress>('progress');
    expect(progress).toMatchObject({ stage: 'done', done: EPISODES, failed: 0, running: 0, queued: 0 });
    expect(sandboxDirs(home)).toEqual([]);
  });

  it('a server outage while every episode runs a command: no step runs twice (counted in the sandboxes)', async () => {
    const runId = 'outage';
    gateShut = () => true;
    const handle = await startPool(runId, 'scripted', { heartbeatTimeoutSec: OUTAGE_HEARTBEAT_TIMEOUT_SEC });
    await until('every episode to wait in its third step', () => atGate().length === EPISODES);
    await killServer();
    const downAt = Date.now();
    // Keep the commands running past the heartbeat timeout (and the worker's own check of it, 5 s later), so
    // the server times every attempt out when it is back; then let them finish while it is down, and stay
    // down past the workers' retries of their reports (lower bounds: a busy machine only lengthens them).
    await sleepUntil(downAt + (OUTAGE_HEARTBEAT_TIMEOUT_SEC + 8) * 1000);
    gateShut = () => false;
    const episodes = tasks.flatMap((_, t) => Array.from({ length: N }, (_, k) => rolloutId(runId, t, k)));
    const stepRecorded = (id: string) =>
      store.getRecord(canonicalJson({ work: 'agent-step', version: 1, rolloutId: id, step: 3 }));
    await until(
      'every third step to record its result',
      async () => (await Promise.all(episodes.map(stepRecorded))).every(Boolean),
      300, // seconds: a step's command ends at once when its gate opens (only catches a hang)
    );
    await sleepUntil(Date.now() + COMPLETION_RETRY_SEC * 3 * 1000 + 15_000);
    await restartServer();
    const result = await poolResult(handle);

    expect(result).toMatchObject({ rollouts: EPISODES, failed: 0 });
    const summary = summaryOf(result);
    expect(summary.exitReasons).toEqual({ submitted: EPISODES });
    for (const o of summary.outcomes) {
      const t = await comparableTrajectory(store, o.trajectoryId!);
      // Each counting command says it ran for the first time in its sandbox.
      expect(t.steps[0]!.observation, String(o.seed)).toContain(FIRST_RUNS[0]);
      expect(t.steps[2]!.observation, String(o.seed)).toContain(FIRST_RUNS[1]);
    }
    for (const id of episodes) {
      // The outage did cost each third step its first attempt (the server timed it out)…
      const [attempts, ...again] = await stepAttempts(id, 3);
      expect(attempts, id).toBeGreaterThanOrEqual(2);
      expect(again, id).toEqual([]);
      // …in the same sandbox, where running the command again would have counted 2.
      expect(await sandboxesMade(id), id).toBe(1);
    }
    expect(sandboxDirs(home)).toEqual([]);
  });
});
