import { type ChildProcess, execFileSync, spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArtifactStore } from '../../activities/artifacts';
import { episodeLimitsSchema } from '../../domain/agent/limits';
import { call, planDemonstration } from '../../domain/demonstrator';
import { filesInPatch, type TaskInstance } from '../../domain/instance';
import { samplingSchema } from '../../domain/llmPolicy';
import { sandboxConfigSchema } from '../../domain/runConfig';
import type { RolloutInput, RolloutResult } from '../../workflows/rollout';
import { FIXTURE_REPO, fixtureInstances, isolatedHome } from '../helpers/env';
import { type ScriptedOpenAI, startScriptedOpenAI } from '../helpers/scriptedOpenAI';
import { sandboxDirs, startTestTemporal, startWorkerProcess, type TestTemporal } from '../helpers/temporal';
import { comparableTrajectory } from '../helpers/trajectories';

/**
 * A crash loses no completed turn and repeats none: a rollout whose sandbox worker is SIGKILLed in the middle
 * of a step, or whose LLM worker is SIGKILLed during a call, finishes with the same trajectory as an
 * uninterrupted run of the same scripted policy (timings aside). Real worker processes, real dev server.
 */

const home = isolatedHome('rollout-kill');
const PREFIX = 'rollout-kill';
const store = new ArtifactStore();
const workers: ChildProcess[] = [];
let temporal: TestTemporal;
let endpoint: ScriptedOpenAI;
const instance = fixtureInstances()[0] as unknown as TaskInstance;
/** A marker no other process has: the slow step's command, found on the host with pgrep. */
const SLOW = 'sleep 7.3579';
/** Set by a test to hold the next reply until the test releases it. */
let hold: { turn: number; reached: () => void; release: Promise<void> } | undefined;

function replies(): string[] {
  const git = (...args: string[]) => execFileSync('git', args, { cwd: FIXTURE_REPO, encoding: 'utf8' });
  const baseFiles = Object.fromEntries(
    filesInPatch(instance.patch).map((f) => [f, git('show', `${instance.base_commit}:${f}`)]),
  );
  const repoFiles = git('ls-tree', '-r', '--name-only', instance.base_commit).trim().split('\n');
  const plan = planDemonstration({ patch: instance.patch, repoPath: '/testbed', baseFiles, repoFiles });
  // view, str_replace, then a slow command that sees the edit, then the tests and finish.
  const slow = `Let me check the edit is in place.\n${call('execute_bash', { cmd: `${SLOW} && grep -c "11, 12, 13" inflection/__init__.py` })}`;
  return ['Where is the bug?', plan[0]!, plan[1]!, slow, ...plan.slice(2)];
}

const start = (roles: ('cpu' | 'sandbox' | 'llm')[]) =>
  startWorkerProcess(temporal.address, { queuePrefix: PREFIX, home, started: workers, roles });

beforeAll(async () => {
  temporal = await startTestTemporal(home);
  const script = replies();
  endpoint = await startScriptedOpenAI(async (request) => {
    const turn = (request.body.messages as { role: string }[]).filter((m) => m.role === 'assistant').length;
    if (hold && hold.turn === turn) {
      hold.reached();
      await hold.release;
    }
    return { body: script[Math.min(turn, script.length - 1)]! };
  });
});
afterAll(async () => {
  for (const w of workers) w.kill('SIGKILL');
  await endpoint?.close();
  await temporal?.close();
});

function input(): Promise<RolloutInput> {
  return store.putJson({ ...instance, source: { kind: 'git', path: FIXTURE_REPO } }).then(({ id }) => ({
    runId: 'kill',
    instanceId: instance.instance_id,
    instanceRef: id,
    policy: {
      kind: 'openai',
      name: 'scripted',
      endpoint: { baseUrl: endpoint.baseUrl, model: 'scripted', requestTimeoutSec: 600, maxRetries: 0 },
    },
    sampling: samplingSchema.parse({ temperature: 0 }),
    seed: 1,
    limits: episodeLimitsSchema.parse({ maxSteps: 20 }),
    sandbox: sandboxConfigSchema.parse({ heartbeatTimeoutSec: 10 }),
    testTimeoutSec: 600,
  }));
}

const trajectory = (result: RolloutResult) => comparableTrajectory(store, result.trajectoryId);

function slowStepRunning(): boolean {
  return spawnSync('pgrep', ['-f', SLOW]).status === 0;
}

describe('rollouts survive killed workers', () => {
  let reference: Awaited<ReturnType<typeof trajectory>>;

  it('an uninterrupted run (the reference)', async () => {
    const worker = await start(['cpu', 'sandbox', 'llm']);
    const result = (await temporal.client.workflow.execute('rolloutWorkflow', {
      taskQueue: `${PREFIX}-cpu`,
      workflowId: 'rollout/reference',
      args: [await input()],
    })) as RolloutResult;
    expect(result).toMatchObject({ exitReason: 'submitted', resolved: true, steps: replies().length });
    reference = await trajectory(result);
    worker.kill('SIGKILL');
  });

  it('the sandbox worker is SIGKILLed mid-step: a new sandbox elsewhere, the checkpoint restored, the step re-run', async () => {
    const first = await start(['cpu', 'sandbox', 'llm']);
    const before = endpoint.requests.length;
    const handle = await temporal.client.workflow.start('rolloutWorkflow', {
      taskQueue: `${PREFIX}-cpu`,
      workflowId: 'rollout/sandbox-killed',
      args: [await input()],
    });
    for (let i = 0; i < 2400 && !slowStepRunning(); i++) await new Promise((r) => setTimeout(r, 100));
    expect(slowStepRunning()).toBe(true); // the kill lands while the step runs, after the edit
    first.kill('SIGKILL');
    await start(['cpu', 'sandbox', 'llm']);
    const result = (await handle.result()) as RolloutResult;
    expect(await trajectory(result)).toEqual(reference);
    // Every model call was made once: the interrupted step re-ran its command, not the model.
    expect(endpoint.requests.length - before).toBe(replies().length);
    expect(sandboxDirs(home)).toEqual([]);
  });

  it('the LLM worker is SIGKILLed during a call: the call is made again elsewhere, nothing else repeats', async () => {
    for (const w of workers) w.kill('SIGKILL');
    await start(['cpu', 'sandbox']);
    const llmWorker = await start(['llm']);
    let reached!: () => void;
    const atCall = new Promise<void>((r) => {
      reached = r;
    });
    let release!: () => void;
    hold = {
      turn: 2,
      reached,
      release: new Promise<void>((r) => {
        release = r;
      }),
    };
    const before = endpoint.requests.length;
    const handle = await temporal.client.workflow.start('rolloutWorkflow', {
      taskQueue: `${PREFIX}-cpu`,
      workflowId: 'rollout/llm-killed',
      args: [await input()],
    });
    await atCall; // the third call is in flight, its worker waiting on the endpoint
    llmWorker.kill('SIGKILL');
    hold = undefined;
    release(); // the dead worker's request gets its answer, which nobody reads
    await start(['llm']);
    const result = (await handle.result()) as RolloutResult;
    expect(await trajectory(result)).toEqual(reference);
    expect(endpoint.requests.length - before).toBe(replies().length + 1); // the interrupted call, once more
    expect(sandboxDirs(home)).toEqual([]);
  });
});
