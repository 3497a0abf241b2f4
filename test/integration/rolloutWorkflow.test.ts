import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArtifactStore } from '../../activities/artifacts';
import { episodeLimitsSchema } from '../../domain/agent/limits';
import type { TrajectoryRecord } from '../../domain/agent/trajectory';
import { planDemonstration } from '../../domain/demonstrator';
import { filesInPatch, type TaskInstance } from '../../domain/instance';
import { samplingSchema } from '../../domain/llmPolicy';
import { sandboxConfigSchema } from '../../domain/runConfig';
import type { RolloutInput, RolloutResult } from '../../workflows/rollout';
import { FIXTURE_REPO, fixtureInstances, isolatedHome } from '../helpers/env';
import { type ScriptedOpenAI, startScriptedOpenAI } from '../helpers/scriptedOpenAI';
import { sandboxDirs, startTestTemporal, startTestWorkers, type TestTemporal } from '../helpers/temporal';

/**
 * Rollouts through the whole durable path: a real dev server, in-process cpu/sandbox/llm workers, real
 * bwrap sandboxes, grading in a fresh sandbox. The policy is a scripted OpenAI-compatible server (reached
 * by the same `openai` client as production) or the gold-patch demonstrator.
 */

const home = isolatedHome('rollout');
const PREFIX = 'rollout-test';
const store = new ArtifactStore();
let temporal: TestTemporal;
let workers: Awaited<ReturnType<typeof startTestWorkers>>;
let endpoint: ScriptedOpenAI;
const instance = fixtureInstances()[0] as unknown as TaskInstance;

/** The demonstrator's replies (paths relative to the repository) with a malformed reply first, for the scripted endpoint. */
function scriptedReplies(): string[] {
  const git = (...args: string[]) => execFileSync('git', args, { cwd: FIXTURE_REPO, encoding: 'utf8' });
  const baseFiles = Object.fromEntries(
    filesInPatch(instance.patch).map((f) => [f, git('show', `${instance.base_commit}:${f}`)]),
  );
  const repoFiles = git('ls-tree', '-r', '--name-only', instance.base_commit).trim().split('\n');
  const plan = planDemonstration({ patch: instance.patch, repoPath: '.', baseFiles, repoFiles });
  return ['Let me think about where the bug is.', ...plan];
}

beforeAll(async () => {
  temporal = await startTestTemporal(home);
  workers = await startTestWorkers(temporal.address, PREFIX, ['cpu', 'sandbox', 'llm']);
  const replies = scriptedReplies();
  // Answers by the number of assistant turns already in the conversation, as a model would.
  endpoint = await startScriptedOpenAI((request) => {
    const messages = request.body.messages as { role: string }[];
    const turn = messages.filter((m) => m.role === 'assistant').length;
    return { body: replies[Math.min(turn, replies.length - 1)]! };
  });
});
afterAll(async () => {
  await endpoint?.close();
  await workers?.stop();
  await temporal?.close();
});

async function rollout(
  workflowId: string,
  policy: RolloutInput['policy'],
  maxSteps = 20,
): Promise<RolloutResult> {
  const { id: instanceRef } = await store.putJson({
    ...instance,
    source: { kind: 'git', path: FIXTURE_REPO },
  });
  const input: RolloutInput = {
    runId: 'rollout-test',
    instanceId: instance.instance_id,
    instanceRef,
    policy,
    sampling: samplingSchema.parse({ temperature: 0 }),
    seed: 7,
    limits: episodeLimitsSchema.parse({ maxSteps }),
    sandbox: sandboxConfigSchema.parse({}),
    testTimeoutSec: 600,
  };
  return temporal.client.workflow.execute('rolloutWorkflow', {
    taskQueue: `${PREFIX}-cpu`,
    workflowId,
    args: [input],
  });
}

describe('rolloutWorkflow (real dev server, real bwrap, real grading)', () => {
  it('runs a scripted policy through the openai client to a submitted, resolved patch', async () => {
    const before = endpoint.requests.length;
    const result = await rollout('rollout/scripted', {
      kind: 'openai',
      name: 'scripted-policy',
      endpoint: { baseUrl: endpoint.baseUrl, model: 'scripted-policy', requestTimeoutSec: 60, maxRetries: 2 },
    });
    expect(result).toMatchObject({
      exitReason: 'submitted',
      resolved: true,
      steps: scriptedReplies().length,
    });
    const record = await store.getJson<TrajectoryRecord>(result.trajectoryId);
    expect(record.steps.map((s) => s.call?.name ?? s.error)).toEqual([
      'no_call',
      'file_editor',
      'file_editor',
      'execute_bash',
      'finish',
    ]);
    // The malformed reply got its own observation and the episode went on.
    expect(await store.getText(record.steps[0]!.observationId!)).toMatch(/function/i);
    // The edit really happened in the sandbox: the test run saw the fixed code pass.
    expect(await store.getText(record.steps[3]!.observationId!)).toMatch(/Exit code: 0/);
    expect(record.patch).toContain('in (11, 12, 13)');
    expect(record.reward).toBe(1);
    // One LLM call per step, each re-sending the growing conversation by the same client path.
    const calls = endpoint.requests.slice(before);
    expect(calls).toHaveLength(5);
    expect(calls.map((c) => (c.body.messages as unknown[]).length)).toEqual([2, 4, 6, 8, 10]);
    expect(calls[0]!.body).toMatchObject({ model: 'scripted-policy', temperature: 0, seed: 8 });
    expect(sandboxDirs(home)).toEqual([]);
  });

  it('ends at the step limit with the steps it made, and grades what it left', async () => {
    const result = await rollout(
      'rollout/step-limit',
      {
        kind: 'openai',
        name: 'scripted-policy',
        endpoint: {
          baseUrl: endpoint.baseUrl,
          model: 'scripted-policy',
          requestTimeoutSec: 60,
          maxRetries: 2,
        },
      },
      2,
    );
    expect(result).toMatchObject({ exitReason: 'step_limit', steps: 2, resolved: false });
    const record = await store.getJson<TrajectoryRecord>(result.trajectoryId);
    expect(record.patch).toBe(''); // it only looked around
  });

  it('keeps history small: at most 4 KB and 12 events per turn (plus a fixed start and end), as the server counts them', async () => {
    const busy = await startScriptedOpenAI(() => ({
      body: 'Checking.\n<function=execute_bash>\n<parameter=cmd>git status --short | wc -l</parameter>\n</function>',
    }));
    try {
      const turns = 30;
      const result = await rollout(
        'rollout/history',
        {
          kind: 'openai',
          name: 'busy',
          endpoint: { baseUrl: busy.baseUrl, model: 'busy', requestTimeoutSec: 60, maxRetries: 0 },
        },
        turns,
      );
      expect(result).toMatchObject({ exitReason: 'step_limit', steps: turns });
      const description = await temporal.client.workflow.getHandle('rollout/history').describe();
      const bytes = Number(description.raw.workflowExecutionInfo?.historySizeBytes ?? 0);
      const events = Number(description.historyLength);
      expect(bytes).toBeGreaterThan(0);
      expect(bytes / turns).toBeLessThanOrEqual(4096);
      // Per turn: two activities and two workflow tasks (3 events each); the rest opens and closes the episode.
      expect(events).toBeLessThanOrEqual(12 * turns + 40);
    } finally {
      await busy.close();
    }
  });

  it('the gold-patch demonstrator resolves the task through the real parser and tools', async () => {
    const result = await rollout('rollout/demonstrator', { kind: 'demonstrator', name: 'demonstrator' });
    expect(result).toMatchObject({ exitReason: 'submitted', resolved: true });
    const record = await store.getJson<TrajectoryRecord>(result.trajectoryId);
    expect(record.steps.at(-1)!.call?.name).toBe('finish');
    expect(record.steps.some((s) => s.call?.parameters.command === 'str_replace')).toBe(true);
  });
});
