import { describe, expect, it } from 'vitest';
import {
  deploymentKey,
  HALF_CREATED_GRACE_MS,
  judgeSandbox,
  type SweeperFacts,
} from '../../domain/sandboxOrphans';

const DEAD = 4242;
const sweeper: SweeperFacts = {
  hostname: 'host-a',
  pid: 100,
  deployment: 'temporal:cluster-1/default/entropo',
  isPidAlive: (pid) => pid !== DEAD,
};
const owner = (over: Partial<Parameters<typeof judgeSandbox>[0] & object> = {}) => ({
  hostname: 'host-a',
  pid: 200,
  workflowId: 'wf-1',
  deployment: sweeper.deployment,
  ...over,
});

describe('the sandbox orphan rule', () => {
  it('asks about the workflow only for sandboxes of its own deployment', () => {
    expect(judgeSandbox(owner(), sweeper, undefined)).toEqual({
      verdict: 'ask-workflow',
      workflowId: 'wf-1',
    });
    // another deployment's sandbox, live worker: its workflow id means nothing to our Temporal
    expect(judgeSandbox(owner({ deployment: 'temporal:cluster-2/default/other' }), sweeper, 0).verdict).toBe(
      'keep',
    );
    expect(
      judgeSandbox(owner({ hostname: 'host-b', deployment: 'temporal:cluster-1/default/other' }), sweeper, 0)
        .verdict,
    ).toBe('keep');
  });

  it("judges the sweeper's own live sandboxes by their workflow too", () => {
    expect(judgeSandbox(owner({ pid: sweeper.pid }), sweeper, 0).verdict).toBe('ask-workflow');
  });

  it('removes a dead local worker’s sandbox whatever its deployment, never a remote one by pid', () => {
    for (const deployment of [undefined, 'temporal:cluster-2/default/x', sweeper.deployment])
      expect(judgeSandbox(owner({ pid: DEAD, deployment }), sweeper, 0).verdict).toBe('orphan');
    expect(
      judgeSandbox(owner({ pid: DEAD, hostname: 'host-b', deployment: 'other' }), sweeper, 0).verdict,
    ).toBe('keep');
  });

  it('keeps sandboxes without a deployment label (older versions) unless their local worker is dead', () => {
    expect(judgeSandbox(owner({ deployment: undefined }), sweeper, 0).verdict).toBe('keep');
    expect(judgeSandbox(owner({ deployment: undefined, hostname: 'host-b' }), sweeper, 0).verdict).toBe(
      'keep',
    );
  });

  it('judges no workflow when the sweeper does not know its deployment', () => {
    expect(judgeSandbox(owner(), { ...sweeper, deployment: undefined }, 0).verdict).toBe('keep');
  });

  it('keeps a sandbox that serves no workflow', () => {
    expect(judgeSandbox(owner({ workflowId: '' }), sweeper, 0).verdict).toBe('keep');
  });

  it('gives a sandbox without owner record time to get one', () => {
    expect(judgeSandbox(undefined, sweeper, 1000).verdict).toBe('keep');
    expect(judgeSandbox(undefined, sweeper, HALF_CREATED_GRACE_MS).verdict).toBe('orphan');
    expect(judgeSandbox(undefined, sweeper, undefined).verdict).toBe('orphan');
  });
});

describe('deployment identity', () => {
  it('is the cluster id with namespace and queue prefix, or a configured name', () => {
    const parts = { clusterId: 'c-1', namespace: 'default', queuePrefix: 'entropo' };
    expect(deploymentKey(parts)).toBe('temporal:c-1/default/entropo');
    expect(deploymentKey({ ...parts, queuePrefix: 'other' })).not.toBe(deploymentKey(parts));
    expect(deploymentKey({ ...parts, namespace: 'ns2' })).not.toBe(deploymentKey(parts));
    expect(deploymentKey({ ...parts, configuredName: ' prod-a ' })).toBe('name:prod-a');
    expect(deploymentKey({ ...parts, configuredName: '  ' })).toBe('temporal:c-1/default/entropo');
    expect(() => deploymentKey({ ...parts, clusterId: '' })).toThrow(/no cluster id/);
  });
});
