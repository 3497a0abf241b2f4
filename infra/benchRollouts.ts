/**
 * Rollout benchmark (`npm run bench:rollouts`), in one process against one dev server, with an instant
 * scripted model (an OpenAI-compatible HTTP server answering at once) so that what is measured is ours:
 *   1. what durability adds per turn: the durable rollout workflow vs the same loop run in-process (the same
 *      policy call through the same `openai` client, the same agent step on the same kind of sandbox, no
 *      Temporal), milliseconds per turn, interleaved;
 *   2. history per turn as the server counts it (`historySizeBytes`, events) on a long episode, and where
 *      that episode's turns spend their time, read from its history's event times (the server's clock):
 *      workflow and activity tasks waiting to be handed to a worker, and being worked on;
 *   3. pool throughput (turns/s) at 1, 8 and 32 concurrent rollouts;
 *   4. the floor: a workflow calling a no-op activity on another queue in a loop (`benchNoopWorkflow.ts`),
 *      ms per call, on the same server. A turn makes two such round trips (the policy call, the step).
 * Each turn runs `true` in the sandbox (the cheapest real command). Prints Markdown for BENCHMARKS.md.
 * BENCH_TURNS (default 100), BENCH_POOL_TURNS (20) and BENCH_POOL_SIZES (1,8,32) size it.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Client } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { MockActivityEnvironment } from '@temporalio/testing';
import { NativeConnection, Worker } from '@temporalio/worker';
import { ArtifactStore } from '../activities/artifacts';
import { callPolicy, type PolicyTurn } from '../activities/llm';
import { LocalSandboxBackend } from '../activities/localSandbox';
import { type AgentStepResult, runAgentStep, startConversation } from '../activities/rollout';
import { SandboxPool } from '../activities/sandboxPool';
import { episodeLimitsSchema } from '../domain/agent/limits';
import type { TaskInstance } from '../domain/instance';
import { llmEndpointSchema, samplingSchema } from '../domain/llmPolicy';
import { sandboxConfigSchema, sandboxLimitsSchema } from '../domain/runConfig';
import { fixtureInstances } from '../test/helpers/env';
import { startScriptedOpenAI } from '../test/helpers/scriptedOpenAI';
import { startTestTemporal, startTestWorkers } from '../test/helpers/temporal';
import type { RolloutInput, RolloutResult } from '../workflows/rollout';

const REPLY = 'Checking.\n<function=execute_bash>\n<parameter=cmd>true</parameter>\n</function>';
const PREFIX = 'bench-rollouts';

async function main() {
  // Its own home: the paths below are read at call time.
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'entropo-bench-rollouts-'));
  process.env.ENTROPO_HOME = home;
  const turns = Number(process.env.BENCH_TURNS ?? 100);
  const poolTurns = Number(process.env.BENCH_POOL_TURNS ?? 20);
  const poolSizes = (process.env.BENCH_POOL_SIZES ?? '1,8,32').split(',').map(Number);
  const store = new ArtifactStore();
  const instance = fixtureInstances()[0] as unknown as TaskInstance; // its source resolved
  const instanceRef = (await store.putJson(instance)).id;
  const model = await startScriptedOpenAI(() => ({ body: REPLY }));
  const endpoint = llmEndpointSchema.parse({ baseUrl: model.baseUrl, model: 'instant', maxRetries: 0 });
  const sampling = samplingSchema.parse({ temperature: 0 });
  const temporal = await startTestTemporal(home);
  const workers = await startTestWorkers(temporal.address, PREFIX, ['cpu', 'sandbox', 'llm']);
  const input = (maxSteps: number): RolloutInput => ({
    runId: 'bench',
    instanceId: instance.instance_id,
    instanceRef,
    policy: { kind: 'openai', name: 'instant', endpoint },
    sampling,
    seed: 0,
    limits: episodeLimitsSchema.parse({ maxSteps }),
    sandbox: sandboxConfigSchema.parse({}),
    testTimeoutSec: 600,
  });
  let episode = 0;
  const durable = async (maxSteps: number) => {
    const workflowId = `bench/${episode++}`;
    const started = performance.now();
    const result = (await temporal.client.workflow.execute('rolloutWorkflow', {
      taskQueue: `${PREFIX}-cpu`,
      workflowId,
      args: [input(maxSteps)],
    })) as RolloutResult;
    return { ms: performance.now() - started, result, workflowId };
  };

  // In-process: the same activities' functions, called directly on a sandbox of this process.
  const pool = new SandboxPool(new LocalSandboxBackend(undefined, () => {}), () => {});
  const inProcess = async (maxSteps: number) => {
    const sandboxId = `bench-inproc-${episode++}`;
    const env = new MockActivityEnvironment();
    const started = performance.now();
    const sandbox = await pool.create('local', {
      sandboxId,
      instanceId: instance.instance_id,
      source: instance.source,
      baseCommit: instance.base_commit,
      limits: sandboxLimitsSchema.parse({}),
    });
    const opened = await startConversation(
      { store },
      { instanceRef, repoRoot: sandbox.repoPath, commandTimeoutSec: 120 },
    );
    let conversationId = opened.conversationId;
    let previousStepId: string | null = null;
    let checkpoint: AgentStepResult['checkpoint'] = null;
    for (let step = 1; step <= maxSteps; step++) {
      const turn = (await env.run(
        callPolicy,
        { store },
        { endpoint, sampling, messagesId: conversationId },
      )) as PolicyTurn;
      if (turn.kind !== 'completion') throw new Error('unexpected context length');
      const result: AgentStepResult = await env.run(
        runAgentStep,
        { store, sandboxes: pool },
        {
          rolloutId: sandboxId,
          stepIndex: step,
          sandboxId,
          baseCommit: opened.baseCommit,
          conversationId,
          completionId: turn.completionId,
          tokensIn: turn.promptTokens,
          tokensOut: turn.completionTokens,
          llmMs: turn.latencyMs,
          checkpoint,
          previousStepId,
          warning: null,
          commandTimeoutSec: 120,
          outputLimitBytes: 65536,
        },
      );
      conversationId = result.conversationId;
      previousStepId = result.stepId;
      checkpoint = result.checkpoint;
    }
    await pool.destroy(sandboxId);
    return performance.now() - started;
  };

  try {
    // 1. Overhead per turn: episodes of 1 and of `turns` steps, so fixed costs (sandbox, grading) cancel.
    const samples = { durable: [] as number[], inProcess: [] as number[] };
    for (let round = 0; round < 3; round++) {
      const long = await durable(turns);
      const short = await durable(1);
      samples.durable.push((long.ms - short.ms) / (turns - 1));
      const longIn = await inProcess(turns);
      const shortIn = await inProcess(1);
      samples.inProcess.push((longIn - shortIn) / (turns - 1));
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const perTurnDurable = median(samples.durable);
    const perTurnInProcess = median(samples.inProcess);

    // 2. History per turn of a long episode.
    const long = await durable(turns);
    const description = await temporal.client.workflow.getHandle(long.workflowId).describe();
    const historyBytes = Number(description.raw.workflowExecutionInfo?.historySizeBytes ?? 0);
    const events = description.historyLength;
    const spent = timeByTransition(await temporal.client.workflow.getHandle(long.workflowId).fetchHistory());

    // 4. The floor: a no-op activity round trip through the same server (its own small workers).
    const noopMsPerCall = await noopRoundTrip(temporal.address, temporal.client, turns);

    // 3. Pool throughput.
    const throughput: { size: number; turnsPerSec: number }[] = [];
    for (const size of poolSizes) {
      const started = performance.now();
      await Promise.all(Array.from({ length: size }, () => durable(poolTurns)));
      throughput.push({ size, turnsPerSec: (size * poolTurns) / ((performance.now() - started) / 1000) });
    }

    const out = (line = '') => process.stdout.write(`${line}\n`);
    out(
      `## Rollouts (\`npm run bench:rollouts\`, ${os.cpus().length} cores, instant scripted model, local sandbox)`,
    );
    out();
    out('| per turn | durable (Temporal) | in-process loop | added by durability |');
    out('| --- | --- | --- | --- |');
    out(
      `| ms (median of 3, ${turns}-turn minus 1-turn episodes) | ${perTurnDurable.toFixed(1)} | ${perTurnInProcess.toFixed(1)} | ${(perTurnDurable - perTurnInProcess).toFixed(1)} ms (${(perTurnDurable / perTurnInProcess).toFixed(2)}×) |`,
    );
    out();
    out(
      `History of a ${turns}-turn episode: ${historyBytes} bytes (${(historyBytes / turns).toFixed(0)} B/turn), ${events} events (${(events / turns).toFixed(1)}/turn).`,
    );
    out();
    out(
      `The floor on this server: a workflow calling a no-op activity in a loop takes ${noopMsPerCall.toFixed(1)} ms per call (${turns}-call minus 1-call workflows); a turn makes two such round trips, ${(2 * noopMsPerCall).toFixed(1)} ms.`,
    );
    out();
    out(
      `Where a turn's time goes (the ${turns}-turn episode's history, the server's event times; ms per turn):`,
    );
    out();
    out('| interval | ms per turn |');
    out('| --- | ---: |');
    for (const [label, ms] of Object.entries(spent)) out(`| ${label} | ${(ms / turns).toFixed(1)} |`);
    out();
    out('| concurrent rollouts | turns/s |');
    out('| --- | --- |');
    for (const t of throughput) out(`| ${t.size} | ${t.turnsPerSec.toFixed(1)} |`);
  } finally {
    await pool.destroyAll();
    await workers.stop();
    await temporal.close();
    await model.close();
  }
}

/** Milliseconds per no-op activity call of `noopLoopWorkflow`: (n calls − 1 call) / (n − 1), median of 3. */
async function noopRoundTrip(address: string, client: Client, n: number): Promise<number> {
  const connection = await NativeConnection.connect({ address });
  const workflowQueue = `${PREFIX}-noop-wf`;
  const activityQueue = `${PREFIX}-noop-act`;
  const workflows = await Worker.create({
    connection,
    taskQueue: workflowQueue,
    workflowsPath: require.resolve('./benchNoopWorkflow'),
  });
  const activities = await Worker.create({
    connection,
    taskQueue: activityQueue,
    activities: { noop: async () => 1 },
  });
  const running = Promise.all([workflows.run(), activities.run()]);
  let id = 0;
  const timed = async (calls: number) => {
    const started = performance.now();
    await client.workflow.execute('noopLoopWorkflow', {
      taskQueue: workflowQueue,
      workflowId: `bench-noop-${id++}`,
      args: [calls, activityQueue],
    });
    return performance.now() - started;
  };
  const samples: number[] = [];
  try {
    for (let round = 0; round < 3; round++) samples.push(((await timed(n)) - (await timed(1))) / (n - 1));
  } finally {
    workflows.shutdown();
    activities.shutdown();
    await running;
    await connection.close();
  }
  return [...samples].sort((a, b) => a - b)[1]!;
}

/**
 * Milliseconds between consecutive history events, summed by what the interval is: a workflow task waiting
 * for a worker (scheduled → started) or being worked on (started → completed), an activity task waiting
 * (scheduled → started, by activity) or running (started → completed, by activity).
 */
function timeByTransition(history: temporal.api.history.v1.IHistory): Record<string, number> {
  const events = history.events ?? [];
  const at = (e: temporal.api.history.v1.IHistoryEvent) =>
    Number(e.eventTime?.seconds ?? 0) * 1000 + (e.eventTime?.nanos ?? 0) / 1e6;
  const activityOf = new Map<string, string>();
  const totals: Record<string, number> = {};
  const add = (label: string, ms: number) => {
    totals[label] = (totals[label] ?? 0) + ms;
  };
  const T = temporal.api.enums.v1.EventType;
  for (let i = 1; i < events.length; i++) {
    const [before, e] = [events[i - 1]!, events[i]!];
    const scheduled = e.activityTaskScheduledEventAttributes;
    if (scheduled) activityOf.set(String(e.eventId), scheduled.activityType?.name ?? '?');
    const gap = at(e) - at(before);
    if (e.eventType === T.EVENT_TYPE_WORKFLOW_TASK_STARTED) add('workflow task: waiting for a worker', gap);
    else if (e.eventType === T.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
      add('workflow task: the worker on it', gap);
    else if (e.eventType === T.EVENT_TYPE_ACTIVITY_TASK_STARTED) {
      const name = activityOf.get(String(e.activityTaskStartedEventAttributes?.scheduledEventId));
      add(`activity ${name}: waiting for a worker`, gap);
    } else if (e.eventType === T.EVENT_TYPE_ACTIVITY_TASK_COMPLETED) {
      const name = activityOf.get(String(e.activityTaskCompletedEventAttributes?.scheduledEventId));
      add(`activity ${name}: running`, gap);
    }
  }
  return Object.fromEntries(Object.entries(totals).sort((a, b) => b[1] - a[1]));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
