/**
 * Which sandboxes a sweeper may remove. Several deployments (each its own Temporal cluster + namespace +
 * task-queue prefix, or a configured name) may share one Docker engine or one host, so a sweeper judges a
 * sandbox by its workflow only when the sandbox belongs to the sweeper's own deployment: another deployment's
 * workflow ids mean nothing to our Temporal ("not found" there is not "closed").
 */

/** The parts of a sandbox's owner record the rule reads. */
export interface OwnerFacts {
  hostname: string;
  pid: number;
  /** The workflow the sandbox serves ('' when none). */
  workflowId: string;
  /** The deployment that made it; absent on sandboxes made before deployments were recorded. */
  deployment?: string;
}

/** The sweeper's own position. */
export interface SweeperFacts {
  hostname: string;
  pid: number;
  /** Its deployment; undefined when it does not know it (then it judges no workflow). */
  deployment: string | undefined;
  isPidAlive(pid: number): boolean;
}

export type OrphanVerdict =
  | { verdict: 'orphan'; reason: string }
  | { verdict: 'keep'; reason: string }
  /** Ours, and only its workflow's state decides: remove it if that workflow is no longer open. */
  | { verdict: 'ask-workflow'; workflowId: string };

/** How long a sandbox without an owner record may be in the middle of being created. */
export const HALF_CREATED_GRACE_MS = 10 * 60 * 1000;

/**
 * The orphan rule:
 *  1. no owner record: a half-created sandbox, removed once it is older than the grace (its creator may be
 *     writing the record right now);
 *  2. its worker ran on this host and that process is dead: nobody can use it again, whatever deployment it
 *     belonged to (commands reach a sandbox only through the worker holding it);
 *  3. no deployment recorded (made by an older version) or the sweeper does not know its own: kept — only
 *     rule 2 applies to it;
 *  4. another deployment's: kept;
 *  5. ours and serving a workflow: removed when that workflow is no longer open (also when this very worker
 *     still holds it: a grading that restarted elsewhere or finished left it behind).
 */
export function judgeSandbox(
  owner: OwnerFacts | undefined,
  sweeper: SweeperFacts,
  ageMs: number | undefined,
): OrphanVerdict {
  if (!owner) {
    return ageMs === undefined || ageMs >= HALF_CREATED_GRACE_MS
      ? { verdict: 'orphan', reason: 'no owner record (half-created)' }
      : { verdict: 'keep', reason: 'no owner record yet (being created)' };
  }
  const sameProcess = owner.hostname === sweeper.hostname && owner.pid === sweeper.pid;
  if (owner.hostname === sweeper.hostname && !sameProcess && !sweeper.isPidAlive(owner.pid))
    return { verdict: 'orphan', reason: `its worker (pid ${owner.pid} on this host) is gone` };
  if (!owner.deployment) return { verdict: 'keep', reason: 'no deployment recorded (older sandbox)' };
  if (!sweeper.deployment) return { verdict: 'keep', reason: 'this sweeper does not know its deployment' };
  if (owner.deployment !== sweeper.deployment)
    return { verdict: 'keep', reason: `belongs to deployment ${owner.deployment}` };
  if (!owner.workflowId) return { verdict: 'keep', reason: 'serves no workflow' };
  return { verdict: 'ask-workflow', workflowId: owner.workflowId };
}

/**
 * A deployment's identity: a configured name, or the Temporal cluster's id (the same however its address is
 * spelled: `localhost:7233` and `127.0.0.1:7233` are one server) with the namespace and the task-queue prefix.
 */
export function deploymentKey(parts: {
  configuredName?: string;
  clusterId: string;
  namespace: string;
  queuePrefix: string;
}): string {
  const name = parts.configuredName?.trim();
  if (name) return `name:${name}`;
  if (!parts.clusterId) throw new Error('the Temporal server reported no cluster id');
  return `temporal:${parts.clusterId}/${parts.namespace}/${parts.queuePrefix}`;
}
