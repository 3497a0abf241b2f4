import { ApplicationFailure, Context } from '@temporalio/activity';
import type { EpisodeLimits, ExitReason } from '../domain/agent/limits';
import { withNotes } from '../domain/agent/observations';
import { systemPrompt, taskMessage } from '../domain/agent/prompts';
import { interpretReply } from '../domain/agent/reply';
import { shellQuote } from '../domain/agent/repoPaths';
import {
  type Policy,
  type SamplingParams,
  type TrajectoryRecord,
  type TrajectoryStep,
  trajectoryRecordSchema,
} from '../domain/agent/trajectory';
import { emptyUndoHistory, type UndoHistory } from '../domain/agent/undoHistory';
import { planDemonstration } from '../domain/demonstrator';
import { filesInPatch, type TaskInstance } from '../domain/instance';
import type { ChatMessage } from '../domain/llmPolicy';
import type { ArtifactStore } from './artifacts';
import { withHeartbeat } from './heartbeat';
import type { PolicyTurn } from './llm';
import { recorded } from './recordedWork';
import { readWorkingTreeDiff, type Sandbox } from './sandboxBackend';
import type { SandboxPool } from './sandboxPool';
import { runTool } from './tools';

/**
 * The rollout's work in a sandbox and in the artifact store: the opening conversation, one agent step
 * (interpret the model's reply, run the tool, append the turn, checkpoint the repository), restoring a
 * checkpoint into a fresh sandbox, the demonstrator's replies, and the finished trajectory record.
 * Everything big stays in the store; the workflow sees ids and small fields.
 */

/** The repository state after a step: the working tree's patch against the base commit, and the undo history. */
export interface Checkpoint {
  patchId: string;
  undoHistoryId: string;
}

export interface ConversationStart {
  conversationId: string;
  systemPromptId: string;
  taskMessageId: string;
  baseCommit: string;
}

export async function startConversation(
  deps: { store: ArtifactStore },
  request: { instanceRef: string; repoRoot: string; commandTimeoutSec: number },
): Promise<ConversationStart> {
  const instance = await deps.store.getJson<TaskInstance>(request.instanceRef);
  const system = systemPrompt({ repoRoot: request.repoRoot, commandTimeoutSec: request.commandTimeoutSec });
  const task = taskMessage(instance.problem_statement, { repoRoot: request.repoRoot });
  const messages: ChatMessage[] = [
    { role: 'system', content: system },
    { role: 'user', content: task },
  ];
  return {
    conversationId: (await deps.store.putJson(messages)).id,
    systemPromptId: (await deps.store.put(system)).id,
    taskMessageId: (await deps.store.put(task)).id,
    baseCommit: instance.base_commit,
  };
}

export interface AgentStepRequest {
  /** The rollout's workflow id: with `stepIndex`, the identity of the step. */
  rolloutId: string;
  stepIndex: number;
  sandboxId: string;
  baseCommit: string;
  conversationId: string;
  completionId: string;
  /** The step's LLM record (tokens and time) for the trajectory. */
  tokensIn: number;
  tokensOut: number;
  llmMs: number;
  /** The state before this step (null: the base commit, no edits). */
  checkpoint: Checkpoint | null;
  /** The previous step's record (a linked list: the workflow carries only the newest id). */
  previousStepId: string | null;
  warning: string | null;
  commandTimeoutSec: number;
  outputLimitBytes: number;
}

export interface AgentStepResult {
  conversationId: string;
  stepId: string;
  checkpoint: Checkpoint | null;
  submitted: boolean;
  toolMs: number;
  /** The sandbox the step ran in: a recorded step re-used in another sandbox restores its checkpoint there. */
  sandboxId: string;
}

/** A step record in the store: the trajectory's step plus the link to the one before. */
interface StoredStep {
  step: TrajectoryStep;
  previousStepId: string | null;
}

/**
 * One agent step, recorded under (rollout, step): a retried attempt — after a lost completion or a server
 * outage — returns the recorded result and runs nothing again. If the recorded step ran in a sandbox that
 * has since been lost, its checkpoint is restored into the current one first.
 */
export async function runAgentStep(
  deps: { store: ArtifactStore; sandboxes: SandboxPool },
  request: AgentStepRequest,
): Promise<AgentStepResult> {
  const sandbox = deps.sandboxes.get(request.sandboxId);
  const key = { work: 'agent-step', version: 1, rolloutId: request.rolloutId, step: request.stepIndex };
  return withHeartbeat({ step: request.stepIndex }, async () => {
    const result = await recorded(deps.store, key, () => agentStep(deps.store, sandbox, request));
    if (result.sandboxId !== request.sandboxId && result.checkpoint) {
      await restoreInto(deps.store, sandbox, result.checkpoint, request);
    }
    return result;
  });
}

async function agentStep(
  store: ArtifactStore,
  sandbox: Sandbox,
  request: AgentStepRequest,
): Promise<AgentStepResult> {
  const started = performance.now();
  const reply = await store.getText(request.completionId);
  const interpreted = interpretReply(reply);
  let history: UndoHistory = request.checkpoint
    ? await store.getJson<UndoHistory>(request.checkpoint.undoHistoryId)
    : emptyUndoHistory();
  let observation: string | null;
  let submitted = false;
  let mayHaveChanged = false;
  if (interpreted.kind === 'rejected') {
    observation = interpreted.observation;
  } else {
    const run = await runTool(sandbox, interpreted.action, history, {
      commandTimeoutSec: request.commandTimeoutSec,
      outputLimitBytes: request.outputLimitBytes,
      signal: Context.current().cancellationSignal,
    });
    observation = run.observation;
    history = run.history;
    submitted = run.submitted;
    mayHaveChanged = run.mayHaveChanged;
  }
  const note = interpreted.kind === 'action' ? interpreted.note : null;
  if (observation !== null) observation = withNotes(observation, [note, request.warning]);

  const messages = await store.getJson<ChatMessage[]>(request.conversationId);
  messages.push({ role: 'assistant', content: reply });
  if (observation !== null) messages.push({ role: 'user', content: observation });
  const conversationId = (await store.putJson(messages)).id;

  let checkpoint = request.checkpoint;
  if (mayHaveChanged)
    checkpoint = await checkpointSandbox(store, sandbox, request.baseCommit, history, request);

  const toolMs = Math.round(performance.now() - started);
  const step: TrajectoryStep = {
    index: request.stepIndex,
    thought: interpreted.thought,
    rawOutput: reply,
    call: interpreted.call,
    observationId: observation === null ? null : (await store.put(observation)).id,
    tokensIn: request.tokensIn,
    tokensOut: request.tokensOut,
    llmMs: request.llmMs,
    toolMs,
  };
  if (interpreted.kind === 'rejected') step.error = interpreted.error;
  const stored: StoredStep = { step, previousStepId: request.previousStepId };
  const stepId = (await store.putJson(stored)).id;
  return { conversationId, stepId, checkpoint, submitted, toolMs, sandboxId: request.sandboxId };
}

/** The repository's state: its patch against the base commit (new and binary files included) and the undo history. */
async function checkpointSandbox(
  store: ArtifactStore,
  sandbox: Sandbox,
  baseCommit: string,
  history: UndoHistory,
  limits: { commandTimeoutSec: number },
): Promise<Checkpoint> {
  const patch = await readWorkingTreeDiff(sandbox, baseCommit, {
    timeoutSec: limits.commandTimeoutSec,
    outputLimitBytes: 64 * 1024 * 1024,
  });
  // Content-addressed: an unchanged state re-uses its ids.
  return { patchId: (await store.put(patch)).id, undoHistoryId: (await store.putJson(history)).id };
}

/**
 * Puts a checkpoint into a fresh sandbox (at the base commit): tracked and untracked files as they were.
 * Ignored files and /tmp are not part of a checkpoint.
 */
export async function restoreCheckpoint(
  deps: { store: ArtifactStore; sandboxes: SandboxPool },
  request: { sandboxId: string; checkpoint: Checkpoint; baseCommit: string; commandTimeoutSec: number },
): Promise<void> {
  const sandbox = deps.sandboxes.get(request.sandboxId);
  await restoreInto(deps.store, sandbox, request.checkpoint, request);
}

async function restoreInto(
  store: ArtifactStore,
  sandbox: Sandbox,
  checkpoint: Checkpoint,
  limits: { commandTimeoutSec: number; baseCommit: string },
): Promise<void> {
  const patch = await store.getText(checkpoint.patchId);
  const file = await sandbox.writeTmpFile('checkpoint.patch', patch);
  // From the base commit, whatever the sandbox holds now: the patch is cumulative.
  const apply = patch.trim() === '' ? 'true' : `git apply --binary --whitespace=nowarn ${file}`;
  const result = await sandbox.exec(
    `git reset -q --hard ${limits.baseCommit} && git clean -fdq && ${apply}`,
    {
      timeoutSec: limits.commandTimeoutSec,
      outputLimitBytes: 64 * 1024,
    },
  );
  if (result.exitCode !== 0) {
    throw ApplicationFailure.nonRetryable(
      `restoring checkpoint ${checkpoint.patchId} failed: ${result.stderr.trim().slice(0, 2000)}`,
      'CheckpointRestoreFailed',
    );
  }
}

/**
 * The demonstrator's reply for a step. Its plan is derived once per (task, repository path) from the gold
 * patch and the repository at the base commit (read in the sandbox) and kept as a record, so later steps
 * and other episodes of the task read it instead of deriving it again.
 */
export async function demonstratorTurn(
  deps: { store: ArtifactStore; sandboxes: SandboxPool },
  request: { sandboxId: string; instanceRef: string; stepIndex: number },
): Promise<PolicyTurn> {
  const started = performance.now();
  const sandbox = deps.sandboxes.get(request.sandboxId);
  const plan = await recorded(
    deps.store,
    { work: 'demonstration', version: 1, instanceRef: request.instanceRef, repoPath: sandbox.repoPath },
    () => demonstrationPlan(deps.store, sandbox, request.instanceRef),
  );
  // Past the plan's end (it finished), the demonstrator keeps submitting.
  const reply = plan[Math.min(request.stepIndex - 1, plan.length - 1)]!;
  return {
    kind: 'completion',
    completionId: (await deps.store.put(reply)).id,
    finishReason: 'stop',
    promptTokens: 0,
    completionTokens: reply.split(/\s+/).filter(Boolean).length,
    latencyMs: Math.round(performance.now() - started),
    attempts: 1,
  };
}

async function demonstrationPlan(
  store: ArtifactStore,
  sandbox: Sandbox,
  instanceRef: string,
): Promise<string[]> {
  const instance = await store.getJson<TaskInstance>(instanceRef);
  const git = (args: string) =>
    sandbox.exec(`git ${args}`, { timeoutSec: 120, outputLimitBytes: 32 * 1024 * 1024 });
  const baseFiles: Record<string, string> = {};
  for (const file of filesInPatch(instance.patch)) {
    const shown = await git(`show ${shellQuote(`${instance.base_commit}:${file}`)}`);
    if (shown.exitCode === 0) baseFiles[file] = shown.stdout; // absent at the base: the patch creates it
  }
  const listed = await git(`ls-tree -r --name-only ${instance.base_commit}`);
  if (listed.exitCode !== 0) throw new Error(`git ls-tree failed in the sandbox: ${listed.stderr.trim()}`);
  const repoFiles = listed.stdout.trim().split('\n');
  return planDemonstration({ patch: instance.patch, repoPath: sandbox.repoPath, baseFiles, repoFiles });
}

export interface TrajectoryRequest {
  runId: string;
  rolloutId: string;
  taskId: string;
  policy: Policy;
  sampling: SamplingParams;
  seed: number | null;
  limits: EpisodeLimits;
  systemPromptId: string;
  taskMessageId: string;
  lastStepId: string | null;
  exitReason: ExitReason;
  exitDetail?: string;
  patchId: string | null;
  gradingReportId: string | null;
  resolved: boolean | null;
  startedAt: string;
  finishedAt: string;
}

/** Assembles the trajectory record from the step chain and stores it; returns its artifact id. */
export async function writeTrajectory(
  deps: { store: ArtifactStore },
  request: TrajectoryRequest,
): Promise<string> {
  const steps: TrajectoryStep[] = [];
  for (let id = request.lastStepId; id !== null; ) {
    const stored = await deps.store.getJson<StoredStep>(id);
    steps.push(stored.step);
    id = stored.previousStepId;
  }
  steps.reverse();
  const { lastStepId: _, patchId, ...rest } = request;
  const record: TrajectoryRecord = trajectoryRecordSchema.parse({
    schemaVersion: 1,
    ...rest,
    steps,
    patch: patchId ? await deps.store.getText(patchId) : '',
    reward: request.resolved === null ? null : request.resolved ? 1 : 0,
  });
  return (await deps.store.putJson(record)).id;
}
