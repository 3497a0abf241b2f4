import { type ChildProcess, execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client, Connection, WorkflowFailedError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArtifactStore } from '../../activities/artifacts';
import { canonicalJson } from '../../domain/canonicalJson';
import { planDemonstration } from '../../domain/demonstrator';
import { filesInPatch, type TaskInstance } from '../../domain/instance';
import type { PipelineConfigInput } from '../../domain/pipelineConfig';
import type { RunReport } from '../../domain/runReport';
import { mulberry32 } from '../../domain/seededShuffle';
import type { WorkerRole } from '../../domain/taskQueues';
import { type DevServer, freePort, startDevServer } from '../../infra/devServer';
import type { PipelineResult } from '../../workflows/pipeline';
import { FIXTURE_REPO, fixtureInstances } from '../helpers/env';
import { EDIT, SUBMIT, smallPipelineConfig, tinyModel } from '../helpers/pipelineRun';
import { completion, type ScriptedOpenAI, startScriptedOpenAI } from '../helpers/scriptedOpenAI';
import { quietRuntime, sandboxDirs, startWorkerProcess } from '../helpers/temporal';

/**
 * Chaos: a small pipeline runs while its workers — one
 * process per role — are SIGKILLed at random points and restarted, and the dev server is SIGKILLed once
 * and restarted on the same database. The run must complete with artifacts identical to an uninterrupted
 * run's: trajectories, datasets, pairs, adapters, selections, predictions and the report's numbers,
 * compared by hash after removing only what holds wall-clock times and durations:
 *   - the fields in TIME_FIELDS below (timestamps, step and stage timings, training throughput);
 *   - pytest's own duration in test output ("2 passed in 0.53s"), inside observations;
 *   - a grading's raw test log (see NONDETERMINISTIC_FIELDS).
 * Both runs use the same home directory path (the reference's is moved aside when it is done), so paths,
 * stage keys and every id derived from them are the same.
 * No sandbox is left, and no activity (a step, a model call, a grading, a training job) runs again unless a
 * kill interrupted it.
 *
 * The run is small and deterministic: a scripted teacher (the demonstrator's replies without its test run,
 * whose output carries pytest's duration into the SFT data and so into the adapters) and a scripted student,
 * both OpenAI-compatible endpoints outside our system; the real engine training a tiny random Llama with
 * SmolLM2's tokenizer for one step per stage (the pipeline test trains SmolLM2 itself).
 */

const TIME_FIELDS = new Set([
  'startedAt', // trajectories
  'finishedAt',
  'llmMs', // trajectory steps
  'toolMs',
  'durationMs', // grading reports
  'durations',
  'wallMs', // report stages
  'generatedAt', // the report
  'tokens_per_s', // training events
  'peak_memory_mb',
]);
/**
 * Not a time, but not reproducible either: pytest's raw output in a grading report lists parametrized
 * cases in the order of a Python set in the task's repository, which follows each process's hash seed.
 * The parsed per-test results beside it are compared.
 */
const NONDETERMINISTIC_FIELDS = new Set(['testLogId']);
const DURATION_IN_TEXT = / in \d+(?:\.\d+)?s\b/g;
/**
 * This machine's pyenv (outside our code) sometimes adds these two lines to a command's output when
 * sandboxes start at once; they are not the run's work.
 */
const PYENV_NOISE = /^(?:rm: cannot remove '\/root\/\.pyenv\/shims\/[^\n]*|pyenv: cannot rehash: [^\n]*)\n/gm;
const ROLES: WorkerRole[] = ['cpu', 'sandbox', 'llm', 'gpu'];
const PREFIX = 'chaos';
const RUN_ID = 'chaos';

/** Shared by every run (their configs, and so every id, must be equal): the suites, the policy, the home path. */
const shared = fs.mkdtempSync(path.join(os.tmpdir(), 'entropo-chaos-'));
const HOME = path.join(shared, 'home');
/** A fresh home at the same path: an earlier run's is moved to `home.<label>` (kept to look at). */
function freshHome(earlier: string): string {
  if (fs.existsSync(HOME)) fs.renameSync(HOME, `${HOME}.${earlier}`);
  fs.mkdirSync(HOME);
  return HOME;
}
let policy: ScriptedOpenAI;
/** Every chat request the scripted policy answered: when, and for which conversation. */
const calls: { at: number; conversation: string }[] = [];

/** The demonstrator's replies for a training task, without its test run. */
function teacherScript(instance: TaskInstance): string[] {
  const git = (...args: string[]) => execFileSync('git', args, { cwd: FIXTURE_REPO, encoding: 'utf8' });
  const baseFiles = Object.fromEntries(
    filesInPatch(instance.patch).map((f) => [f, git('show', `${instance.base_commit}:${f}`)]),
  );
  const repoFiles = git('ls-tree', '-r', '--name-only', instance.base_commit).trim().split('\n');
  return planDemonstration({ patch: instance.patch, repoPath: '/testbed', baseFiles, repoFiles }).filter(
    (reply) => !reply.includes('python -m pytest'),
  );
}

beforeAll(async () => {
  quietRuntime();
  const teacher = fixtureInstances()
    .slice(0, 2)
    .map((row) => {
      const instance = row as unknown as TaskInstance;
      return { statement: instance.problem_statement, script: teacherScript(instance) };
    });
  policy = await startScriptedOpenAI((request) => {
    if (!request.path.endsWith('/chat/completions')) return { body: {} };
    const messages = request.body.messages as { role: string; content: string }[];
    calls.push({ at: Date.now(), conversation: canonicalJson(request.body) });
    const replies = messages.filter((m) => m.role === 'assistant').length;
    if (request.body.model === 'teacher') {
      const task = teacher.find((t) => messages[1]!.content.includes(t.statement))!;
      return { body: completion(task.script[Math.min(replies, task.script.length - 1)]!) };
    }
    return { body: completion(replies === 0 ? EDIT : SUBMIT) };
  });
});
afterAll(async () => {
  await policy?.close();
});

function config(): PipelineConfigInput {
  const base = smallPipelineConfig(shared, RUN_ID, { kind: 'external', baseUrl: policy.baseUrl });
  return {
    ...base,
    model: { base: tinyModel(shared), servedName: 'scripted' },
    teacher: {
      kind: 'openai',
      endpoint: { baseUrl: policy.baseUrl, model: 'teacher' },
      name: 'scripted-teacher',
    },
    // A lost sandbox is noticed within 10 s, not the default's minute.
    sandbox: { heartbeatTimeoutSec: 10 },
  };
}

interface Kill {
  at: number;
  what: WorkerRole | 'server';
  /** The killed worker had work under way (a sandbox open, an engine job running). */
  busy?: boolean;
}

/**
 * Whether a role's worker has work under way that a kill interrupts: a sandbox (an episode's or a
 * grading's) for the sandbox role, an engine job for the gpu role. The cpu and llm roles are killed
 * whenever their turn comes.
 */
function busy(role: WorkerRole, home: string): boolean {
  if (role === 'sandbox') return sandboxDirs(home).length > 0;
  if (role === 'gpu') return spawnSync('pgrep', ['-f', `entropo_engine .*${home}/engine-jobs/`]).status === 0;
  return true;
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
      await pause(2000 + random() * 10_000);
      if (done) break;
      const role = ROLES[Math.floor(random() * ROLES.length)]!;
      // Up to 15 s for the worker to have work under way, so the kill interrupts something.
      for (let t = 0; t < 300 && !busy(role, home) && !done; t++) await pause(50);
      if (done) break;
      const wasBusy = busy(role, home);
      workers.get(role)!.kill('SIGKILL');
      kills.push({ at: Date.now(), what: role, busy: wasBusy });
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
  const repeated = await repeatedWork(client);
  for (const w of started) w.kill('SIGKILL');
  await connection.close();
  await server.stop();
  // What happened, to look at when an assertion fails.
  fs.writeFileSync(path.join(home, 'chaos.json'), JSON.stringify({ kills, repeated }, null, 1));
  return { result, kills, repeated, fingerprint: await fingerprint(home, result) };
}

/** One piece of work (an activity with its input) that a workflow did more than once. */
interface RepeatedWork {
  workflowId: string;
  activity: string;
  role: string;
  /** Attempts over every time it was scheduled. */
  attempts: number;
  /** From its first scheduling to its last attempt's end (server clock; the same machine's). */
  from: number;
  to: number;
}

const msOf = (t: { seconds?: unknown; nanos?: number | null } | null | undefined) =>
  Number(t?.seconds ?? 0) * 1000 + (t?.nanos ?? 0) / 1e6;

/**
 * Work done more than once, in every workflow of the namespace: an activity retried (attempt > 1), or
 * scheduled again with the same input (a step re-run in a new sandbox after its sandbox was lost).
 * Activities without input (claiming a device) are not work.
 */
async function repeatedWork(client: Client): Promise<RepeatedWork[]> {
  const repeated: RepeatedWork[] = [];
  for await (const execution of client.workflow.list()) {
    const history = await client.workflow.getHandle(execution.workflowId, execution.runId).fetchHistory();
    const events = history.events ?? [];
    const groups = new Map<
      string,
      { activity: string; role: string; attempts: number; from: number; to: number }
    >();
    const groupOf = new Map<string, string>(); // scheduled event id → group key
    for (const e of events) {
      const scheduled = e.activityTaskScheduledEventAttributes;
      if (scheduled) {
        // The same work in a new sandbox (its sandbox was lost) is the same work.
        const input = (scheduled.input?.payloads ?? []).map((p) =>
          Buffer.from(p.data ?? [])
            .toString('utf8')
            .replace(/"sandboxId":"[^"]*"/g, ''),
        );
        if (input.join('') === '') continue;
        const activity = scheduled.activityType?.name ?? '?';
        const key = `${activity} ${input.join(' ')}`;
        groupOf.set(String(e.eventId), key);
        const group = groups.get(key) ?? {
          activity,
          role: /^\w+-(\w+)/.exec(scheduled.taskQueue?.name ?? '')?.[1] ?? '?',
          attempts: 0,
          from: msOf(e.eventTime),
          to: msOf(e.eventTime),
        };
        groups.set(key, group);
        continue;
      }
      const started = e.activityTaskStartedEventAttributes;
      const closed =
        e.activityTaskCompletedEventAttributes ??
        e.activityTaskFailedEventAttributes ??
        e.activityTaskTimedOutEventAttributes ??
        e.activityTaskCanceledEventAttributes;
      const key = groupOf.get(String((started ?? closed)?.scheduledEventId ?? ''));
      if (!key) continue;
      const group = groups.get(key)!;
      if (started) group.attempts += started.attempt ?? 1;
      group.to = Math.max(group.to, msOf(e.eventTime));
    }
    for (const group of groups.values())
      if (group.attempts > 1) repeated.push({ workflowId: execution.workflowId, ...group });
  }
  return repeated;
}

/** Each artifact of a run, normalized (see the file's comment) and hashed; the normalized form is kept in `<home>/fingerprint/` to diff. */
async function fingerprint(home: string, result: PipelineResult): Promise<Record<string, string>> {
  const store = new ArtifactStore(path.join(home, 'artifacts'));
  const seen = new Map<string, unknown>();
  const normalize = async (value: unknown, depth = 0): Promise<unknown> => {
    if (typeof value === 'string') {
      if (/^sha256:[0-9a-f]{64}$/.test(value) && depth < 6) {
        if (!seen.has(value)) {
          const text = await store.getText(value);
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
      return value.replace(DURATION_IN_TEXT, ' in <time>').replace(PYENV_NOISE, '');
    }
    if (Array.isArray(value)) return Promise.all(value.map((v) => normalize(v, depth)));
    if (value && typeof value === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) {
        if (TIME_FIELDS.has(k) || NONDETERMINISTIC_FIELDS.has(k)) continue;
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
    reference = await runPipeline(freshHome('none'));
    referenceCalls = [...calls];
    expect(reference.result.selectedResolveRate).not.toBeNaN();
    // Nothing is done twice when nothing fails: a repeat in a chaos run is the kill's doing.
    expect(reference.repeated).toEqual([]);
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

  // Two seeds in the suite; CHAOS_SEEDS=1,2,3,4,5 runs more.
  const seeds = (process.env.CHAOS_SEEDS ?? '1,2').split(',').map(Number);
  for (const seed of seeds) {
    it(`workers and the server SIGKILLed at random points (seed ${seed}): the same artifacts`, async () => {
      const home = freshHome(seed === seeds[0] ? 'reference' : `seed-${seeds[seeds.indexOf(seed) - 1]}`);
      const callsBefore = calls.length;
      const run = await runPipeline(home, { seed, workerKills: 6 });
      expect(run.kills.filter((k) => k.what === 'server')).toHaveLength(1);
      expect(run.kills.length).toBeGreaterThanOrEqual(4);
      // The chaos was not idle: sandbox or engine work was under way at some of the kills.
      expect(
        run.kills.filter((k) => (k.what === 'sandbox' || k.what === 'gpu') && k.busy).length,
      ).toBeGreaterThan(0);
      expect(run.fingerprint).toEqual(reference.fingerprint);
      expect(sandboxDirs(home)).toEqual([]);

      // No step, model call, grading or training ran again unless a kill interrupted it: every activity
      // done twice (retried, or scheduled again with the same input) was under way when its role's worker
      // (or the server) was killed.
      for (const r of run.repeated) {
        const cause = run.kills.find(
          (k) => (k.what === r.role || k.what === 'server') && k.at >= r.from && k.at <= r.to,
        );
        expect(cause, `${r.activity} of ${r.workflowId} ran ${r.attempts} times`).toBeDefined();
      }

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
