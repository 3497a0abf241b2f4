import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client, Connection, WorkflowFailedError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArtifactStore } from '../../activities/artifacts';
import { canonicalJson } from '../../domain/canonicalJson';
import type { PipelineConfigInput } from '../../domain/pipelineConfig';
import type { RunReport } from '../../domain/runReport';
import { mulberry32 } from '../../domain/seededShuffle';
import type { WorkerRole } from '../../domain/taskQueues';
import { type DevServer, freePort, startDevServer } from '../../infra/devServer';
import type { PipelineResult } from '../../workflows/pipeline';
import { EDIT, SUBMIT, smallPipelineConfig } from '../helpers/pipelineRun';
import { completion, type ScriptedOpenAI, startScriptedOpenAI } from '../helpers/scriptedOpenAI';
import { quietRuntime, sandboxDirs, startWorkerProcess } from '../helpers/temporal';

/**
 * Chaos: a small pipeline (scripted policy, one optimizer step per training) runs while its workers — one
 * process per role — are SIGKILLed at random points and restarted, and the dev server is SIGKILLed once
 * and restarted on the same database. The run must complete with artifacts identical to an uninterrupted
 * run's: trajectories, datasets, pairs, adapters, selections, predictions and the report's numbers,
 * compared by hash after removing only what holds wall-clock times and durations:
 *   - the fields in TIME_FIELDS below (timestamps, step and stage timings, training throughput);
 *   - pytest's own duration in test output ("2 passed in 0.53s"), inside observations and grading logs;
 * plus the home directory in paths (each run has its own home; its run id, and so every id, is the same).
 * No sandbox is left, and no model call is repeated unless a kill interrupted it.
 */

const TIME_FIELDS = new Set([
  'startedAt',
  'finishedAt',
  'llmMs',
  'toolMs',
  'wallMs',
  'tokens_per_s',
  'tokensPerSecond',
  'seconds',
  'peak_memory_mb',
]);
const DURATION_IN_TEXT = / in \d+(?:\.\d+)?s\b/g;
const ROLES: WorkerRole[] = ['cpu', 'sandbox', 'llm', 'gpu'];
const PREFIX = 'chaos';
const RUN_ID = 'chaos';

/** Shared by both runs (their configs, and so every id, must be equal): the suites and the policy. */
const shared = fs.mkdtempSync(path.join(os.tmpdir(), 'entropo-chaos-shared-'));
let policy: ScriptedOpenAI;
/** Every chat request the scripted policy answered: when, and for which conversation. */
const calls: { at: number; conversation: string }[] = [];

beforeAll(async () => {
  quietRuntime();
  policy = await startScriptedOpenAI((request) => {
    if (!request.path.endsWith('/chat/completions')) return { body: {} };
    const messages = request.body.messages as { role: string }[];
    calls.push({ at: Date.now(), conversation: canonicalJson(messages) });
    const replies = messages.filter((m) => m.role === 'assistant').length;
    return { body: completion(replies === 0 ? EDIT : SUBMIT) };
  });
});
afterAll(async () => {
  await policy?.close();
});

function config(): PipelineConfigInput {
  return {
    ...smallPipelineConfig(shared, RUN_ID, { kind: 'external', baseUrl: policy.baseUrl }),
    // A lost sandbox is noticed within 10 s, not the default's minute.
    sandbox: { heartbeatTimeoutSec: 10 },
  };
}

interface Kill {
  at: number;
  what: WorkerRole | 'server';
}

/** One pipeline run in its own home, dev server and worker processes; `chaos` kills and restarts them. */
async function runPipeline(home: string, chaos?: { seed: number; workerKills: number }) {
  const dbFile = path.join(home, 'temporal.db');
  const port = await freePort();
  let server: DevServer = await startDevServer({ port, headless: true, dbFile });
  const started: ChildProcess[] = [];
  const workers = new Map<WorkerRole, ChildProcess>();
  const startRole = async (role: WorkerRole) =>
    workers.set(
      role,
      await startWorkerProcess(server.address, { queuePrefix: PREFIX, home, started, roles: [role] }),
    );
  for (const role of ROLES) await startRole(role);
  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection });
  const handle = await client.workflow.start('pipelineWorkflow', {
    taskQueue: `${PREFIX}-cpu`,
    workflowId: `run/${RUN_ID}`,
    args: [config()],
  });

  let done = false;
  const kills: Kill[] = [];
  const monkey = (async () => {
    if (!chaos) return;
    const random = mulberry32(chaos.seed);
    const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
    const serverKillAfter = 1 + Math.floor(random() * (chaos.workerKills - 1));
    for (let i = 0; i < chaos.workerKills && !done; i++) {
      await pause(5000 + random() * 20_000);
      if (done) break;
      const role = ROLES[Math.floor(random() * ROLES.length)]!;
      workers.get(role)!.kill('SIGKILL');
      kills.push({ at: Date.now(), what: role });
      await pause(500 + random() * 2500);
      await startRole(role);
      if (i + 1 === serverKillAfter && !done) {
        await pause(random() * 5000);
        process.kill(server.pid!, 'SIGKILL');
        kills.push({ at: Date.now(), what: 'server' });
        await server.exited;
        await pause(2000);
        server = await startDevServer({ port, headless: true, dbFile });
      }
    }
  })();

  let result: PipelineResult;
  for (;;) {
    try {
      result = (await handle.result()) as PipelineResult;
      break;
    } catch (err) {
      if (err instanceof WorkflowFailedError) throw err;
      await new Promise((r) => setTimeout(r, 1000)); // the server is down: ask again when it is back
    }
  }
  done = true;
  await monkey;
  for (const w of started) w.kill('SIGKILL');
  await connection.close();
  await server.stop();
  return { result, kills, fingerprint: await fingerprint(home, result) };
}

/** Each artifact of a run, normalized (see the file's comment) and hashed; the normalized form is kept in `<home>/fingerprint/` to diff. */
async function fingerprint(home: string, result: PipelineResult): Promise<Record<string, string>> {
  const store = new ArtifactStore(path.join(home, 'artifacts'));
  const seen = new Map<string, unknown>();
  const normalize = async (value: unknown, depth = 0): Promise<unknown> => {
    if (typeof value === 'string') {
      if (/^sha256:[0-9a-f]{64}$/.test(value) && depth < 6) {
        if (!seen.has(value)) {
          const text = (await store.getText(value)).replace(DURATION_IN_TEXT, ' in <time>');
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            // text, not JSON
          }
          seen.set(value, await normalize(parsed, depth + 1));
        }
        return seen.get(value);
      }
      return value.replaceAll(home, '<home>').replace(DURATION_IN_TEXT, ' in <time>');
    }
    if (Array.isArray(value)) return Promise.all(value.map((v) => normalize(v, depth)));
    if (value && typeof value === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) {
        if (TIME_FIELDS.has(k)) continue;
        // An adapter is compared by its id: the hash of its files.
        out[k] = k === 'adapterId' ? v : await normalize(v, depth);
      }
      return out;
    }
    return value;
  };
  const readFile = async (file: string): Promise<unknown> => {
    const text = fs.readFileSync(file, 'utf8');
    if (file.endsWith('.jsonl'))
      return normalize(
        text
          .trim()
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l)),
      );
    return normalize(JSON.parse(text));
  };

  const reportFile = path.join(path.dirname(result.reportPath), 'report.json');
  const report = JSON.parse(fs.readFileSync(reportFile, 'utf8')) as RunReport;
  const parts: Record<string, unknown> = { report: await normalize(report) };
  for (const stage of report.stages)
    for (const [name, file] of Object.entries(stage.artifacts))
      if (fs.statSync(file).isFile()) parts[`${stage.stage}: ${name}`] = await readFile(file);
  parts.adapters = report.training.map((t) => [t.stage, t.adapterId]);
  parts.predictions = await readFile(result.predictionsPath);

  const dir = path.join(home, 'fingerprint');
  fs.mkdirSync(dir, { recursive: true });
  const hashes: Record<string, string> = {};
  for (const [name, value] of Object.entries(parts)) {
    const text = canonicalJson(value);
    fs.writeFileSync(path.join(dir, `${name.replace(/\W+/g, '_')}.json`), JSON.stringify(value, null, 1));
    hashes[name] = createHash('sha256').update(text).digest('hex');
  }
  return hashes;
}

describe('the pipeline under chaos', () => {
  let reference: Awaited<ReturnType<typeof runPipeline>>;
  let referenceCalls: typeof calls = [];
  const callTimes = (list: typeof calls) => {
    const byConversation = new Map<string, number[]>();
    for (const c of list)
      byConversation.set(c.conversation, [...(byConversation.get(c.conversation) ?? []), c.at]);
    return byConversation;
  };

  it('an uninterrupted run (the reference)', async () => {
    reference = await runPipeline(fs.mkdtempSync(path.join(os.tmpdir(), 'entropo-chaos-ref-')));
    referenceCalls = [...calls];
    expect(reference.result.selectedResolveRate).not.toBeNaN();
    // Everything the comparison covers is there.
    expect(Object.keys(reference.fingerprint)).toEqual(
      expect.arrayContaining([
        'report',
        'sft: teacher trajectories',
        'sft: SFT data',
        'pool: student trajectories',
        'pairing: pairs',
        'adapters',
        'predictions',
      ]),
    );
  });

  for (const seed of [1, 2]) {
    it(`workers and the server SIGKILLed at random points (seed ${seed}): the same artifacts`, async () => {
      const home = fs.mkdtempSync(path.join(os.tmpdir(), `entropo-chaos-${seed}-`));
      const callsBefore = calls.length;
      const run = await runPipeline(home, { seed, workerKills: 5 });
      expect(run.kills.filter((k) => k.what === 'server')).toHaveLength(1);
      expect(run.kills.length).toBeGreaterThanOrEqual(4);
      expect(run.fingerprint).toEqual(reference.fingerprint);
      expect(sandboxDirs(home)).toEqual([]);

      // A model call made more often than in the reference was in flight when its worker (or the server)
      // was killed. (Episodes of one task open with the same conversation, so calls are counted per
      // conversation against the reference's count.)
      const times = callTimes(calls.slice(callsBefore));
      const expected = callTimes(referenceCalls);
      expect([...times.keys()].sort()).toEqual([...expected.keys()].sort());
      for (const [conversation, at] of times) {
        if (at.length <= expected.get(conversation)!.length) continue;
        const interrupted = run.kills.some(
          (k) => (k.what === 'llm' || k.what === 'server') && k.at >= at[0]! && k.at <= at.at(-1)!,
        );
        expect(interrupted, `a model call repeated without a kill: ${conversation.slice(0, 200)}`).toBe(true);
      }
    });
  }
});
