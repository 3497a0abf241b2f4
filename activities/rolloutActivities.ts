import type { ArtifactStore } from './artifacts';
import { callPolicy, type PolicyTurnRequest } from './llm';
import { recorded } from './recordedWork';
import {
  type AgentStepRequest,
  type Checkpoint,
  demonstratorTurn,
  restoreCheckpoint,
  runAgentStep,
  startConversation,
  type TrajectoryRequest,
  writeTrajectory,
} from './rollout';
import type { SandboxPool } from './sandboxPool';

/** The rollout's activities by the worker role that runs them: sandbox (own queue), llm, cpu. */

export function createRolloutSandboxActivities(store: ArtifactStore, sandboxes: SandboxPool) {
  const deps = { store, sandboxes };
  return {
    startConversation: (request: { sandboxId: string; instanceRef: string; commandTimeoutSec: number }) =>
      startConversation(deps, { ...request, repoRoot: sandboxes.get(request.sandboxId).repoPath }),
    runAgentStep: (request: AgentStepRequest) => runAgentStep(deps, request),
    restoreCheckpoint: (request: {
      sandboxId: string;
      checkpoint: Checkpoint;
      baseCommit: string;
      commandTimeoutSec: number;
    }) => restoreCheckpoint(deps, request),
    demonstratorTurn: (request: { sandboxId: string; instanceRef: string; stepIndex: number }) =>
      demonstratorTurn(deps, request),
  };
}

/**
 * The policy call, recorded per (rollout, step): a retried attempt after a lost completion returns the
 * same reply instead of sampling another, so a crash or an outage never changes the trajectory.
 */
export function createLlmActivities(store: ArtifactStore) {
  return {
    callPolicy: (request: PolicyTurnRequest & { rolloutId: string; stepIndex: number }) => {
      const { rolloutId, stepIndex, ...turn } = request;
      return recorded(
        store,
        { work: 'policy-turn', version: 1, rolloutId, step: stepIndex, messagesId: turn.messagesId },
        () => callPolicy({ store }, turn),
      );
    },
  };
}

export function createRolloutCpuActivities(store: ArtifactStore) {
  return {
    writeTrajectory: (request: TrajectoryRequest) => writeTrajectory({ store }, request),
  };
}

export type RolloutSandboxActivities = ReturnType<typeof createRolloutSandboxActivities>;
export type LlmActivities = ReturnType<typeof createLlmActivities>;
export type RolloutCpuActivities = ReturnType<typeof createRolloutCpuActivities>;
