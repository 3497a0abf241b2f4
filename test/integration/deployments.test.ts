import * as fs from 'node:fs';
import * as path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalSandboxBackend } from '../../activities/localSandbox';
import { SandboxPool } from '../../activities/sandboxPool';
import { instanceSchema, type TaskInstance, taskImageName } from '../../domain/instance';
import type { SandboxBackendName } from '../../domain/runConfig';
import { sandboxLimitsSchema } from '../../domain/runConfig';
import { buildTaskImage } from '../../infra/buildImages';
import { deploymentOf, workflowOpenCheck } from '../../workers/worker';
import { dockerOrExplain } from '../helpers/docker';
import { fixtureInstances, isolatedHome } from '../helpers/env';
import { startTestTemporal, type TestTemporal } from '../helpers/temporal';

/**
 * Two deployments (each its own Temporal server and queue prefix) share one host and one Docker engine.
 * Each sweeps; neither may touch the other's live sandboxes, and each still removes its own once their
 * workflow has closed. A deployment is the same whichever spelling of its server's address a worker used.
 */

const home = isolatedHome('deployments');
const instance = instanceSchema.parse(fixtureInstances()[0]) as TaskInstance;
const servers: TestTemporal[] = [];
const connections: Connection[] = [];
let a: TestTemporal;
let b: TestTemporal;

beforeAll(async () => {
  a = await startTestTemporal(path.join(home, 'a'));
  servers.push(a);
  b = await startTestTemporal(path.join(home, 'b'));
  servers.push(b);
});
afterAll(async () => {
  for (const c of connections) await c.close();
  for (const s of servers) await s.close();
});

async function connect(address: string): Promise<Client> {
  const connection = await Connection.connect({ address });
  connections.push(connection);
  return new Client({ connection });
}

/** A sweeper of one deployment, as a sandbox worker makes it: its pool, and its Temporal to ask. */
async function deployment(address: string, queuePrefix: string, backend: SandboxBackendName) {
  const client = await connect(address);
  const key = await deploymentOf(client.connection, 'default', queuePrefix);
  const pool = new SandboxPool(new LocalSandboxBackend(path.join(home, 'sandboxes')), undefined, key);
  const isOpen = workflowOpenCheck(client);
  return {
    key,
    client,
    pool,
    sweep: () => pool.sweepOrphans(isOpen),
    /** A grading workflow that stays open (no worker serves its queue) with a sandbox of this deployment. */
    async gradingWithSandbox(workflowId: string) {
      await client.workflow.start('gradeInstanceWorkflow', {
        workflowId,
        taskQueue: `${queuePrefix}-nobody`,
        args: [],
      });
      return pool.create(backend, {
        sandboxId: workflowId,
        instanceId: instance.instance_id,
        source: instance.source,
        baseCommit: instance.base_commit,
        image: backend === 'docker' ? taskImageName(instance) : undefined,
        runId: 'deployments-test',
        workflowId,
        limits: sandboxLimitsSchema.parse({}),
      });
    },
    exists: async (sandboxId: string) =>
      backend === 'local'
        ? fs.existsSync(path.join(home, 'sandboxes', sandboxId))
        : (await pool.docker().listManaged()).some((c) => c.sandboxId === sandboxId),
  };
}

function port(address: string): string {
  return address.split(':').pop()!;
}

describe('deployment identity', () => {
  it('is one deployment however the server address is spelled, another for another server or prefix', async () => {
    const viaIp = await deploymentOf(
      (await connect(`127.0.0.1:${port(a.address)}`)).connection,
      'default',
      'dep',
    );
    const viaName = await deploymentOf(
      (await connect(`localhost:${port(a.address)}`)).connection,
      'default',
      'dep',
    );
    expect(viaName).toBe(viaIp);
    expect(await deploymentOf(b.client.connection, 'default', 'dep')).not.toBe(viaIp);
    expect(await deploymentOf(a.client.connection, 'default', 'dep2')).not.toBe(viaIp);
    expect(await deploymentOf(a.client.connection, 'default', 'dep', 'prod-eu')).toBe('name:prod-eu');
  });
});

function twoDeploymentsSuite(backend: SandboxBackendName) {
  it(`${backend}: neither deployment's sweeper touches the other's live sandboxes; each removes its own closed ones`, async () => {
    const depA = await deployment(a.address, 'depa', backend);
    const depB = await deployment(b.address, 'depb', backend);
    const idA = `dep-${backend}-a`;
    const idB = `dep-${backend}-b`;
    await depA.gradingWithSandbox(idA);
    await depB.gradingWithSandbox(idB);

    // Each sweeps with its own Temporal, which does not know the other's workflow.
    await depA.sweep();
    await depB.sweep();
    expect(await depA.exists(idA)).toBe(true);
    expect(await depB.exists(idB)).toBe(true);

    // A's grading ends: B's sweeper still leaves it alone (not its business) ...
    await depA.client.workflow.getHandle(idA).terminate('grading over');
    expect(await depB.sweep()).not.toContain(idA);
    expect(await depA.exists(idA)).toBe(true);
    // ... and A's own sweeper removes it, though A's pool still holds it; B's live sandbox stays.
    expect(await depA.sweep()).toContain(idA);
    expect(await depA.exists(idA)).toBe(false);
    expect(depA.pool.local.find(idA) ?? depA.pool.docker().find(idA)).toBeUndefined();
    expect(await depB.exists(idB)).toBe(true);

    // A sweeper that reached A's server as `localhost:` is the same deployment as one that used 127.0.0.1.
    const idA2 = `dep-${backend}-a2`;
    await depA.gradingWithSandbox(idA2);
    const depAByName = await deployment(`localhost:${port(a.address)}`, 'depa', backend);
    expect(depAByName.key).toBe(depA.key);
    expect(await depAByName.sweep()).not.toContain(idA2); // open: kept
    await depA.client.workflow.getHandle(idA2).terminate('grading over');
    expect(await depAByName.sweep()).toContain(idA2);
    expect(await depA.exists(idA2)).toBe(false);

    await depB.client.workflow.getHandle(idB).terminate('grading over');
    expect(await depB.sweep()).toContain(idB);
    expect(await depB.exists(idB)).toBe(false);
  });
}

describe('sandboxes of two deployments on one host', () => {
  twoDeploymentsSuite('local');
});

if (dockerOrExplain('two deployments on one Docker engine')) {
  describe('containers of two deployments on one Docker engine', () => {
    beforeAll(async () => {
      await buildTaskImage(instance, { log: () => {} });
    });
    twoDeploymentsSuite('docker');
  });
}
