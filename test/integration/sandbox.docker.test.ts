import { beforeAll, describe, expect, it } from 'vitest';
import { ArtifactStore } from '../../activities/artifacts';
import { DockerImageMissingError, DockerSandboxBackend, SANDBOX_LABEL } from '../../activities/dockerSandbox';
import { LocalSandboxBackend } from '../../activities/localSandbox';
import { SandboxPool } from '../../activities/sandboxPool';
import { instanceSchema, taskImageName } from '../../domain/instance';
import { sandboxLimitsSchema } from '../../domain/runConfig';
import { buildTaskImage } from '../../infra/buildImages';
import { dockerOrExplain } from '../helpers/docker';
import { fixtureInstances, isolatedHome } from '../helpers/env';
import {
  conformanceSuite,
  containmentSuite,
  gradeWith,
  historyInstances,
  localHarness,
  OPTS,
  repositoryHistorySuite,
  type SandboxHarness,
} from '../sandbox/suites';

const home = isolatedHome('sbx-docker');
const instances = fixtureInstances().map((row) => instanceSchema.parse(row));

if (dockerOrExplain('docker sandbox conformance and containment suites')) {
  const pool = new SandboxPool(new LocalSandboxBackend(`${home}/sandboxes`));
  const store = new ArtifactStore();
  const harness: SandboxHarness = {
    backend: 'docker',
    pool,
    store,
    instances,
    create: (sandboxId, { limits, instance = instances[0]! } = {}) =>
      pool.create('docker', {
        sandboxId,
        instanceId: instance.instance_id,
        source: instance.source,
        baseCommit: instance.base_commit,
        image: taskImageName(instance),
        runId: 'docker-test',
        limits: sandboxLimitsSchema.parse(limits ?? {}),
      }),
    prepare: async (instance) => {
      await buildTaskImage(instance, { log: () => {} });
    },
  };

  beforeAll(async () => {
    for (const instance of instances) await buildTaskImage(instance, { log: () => {} });
  });

  conformanceSuite(harness);
  containmentSuite(harness);
  repositoryHistorySuite(harness, historyInstances(`${home}/later-fix`));

  describe('docker backend specifics', () => {
    it('grades every fixture instance with the same verdicts and per-test statuses as the local sandbox', async () => {
      const local = localHarness(pool, store, instances);
      for (const instance of instances) {
        for (const patch of [{ kind: 'gold' }, { kind: 'empty' }] as const) {
          const inDocker = await gradeWith(harness, instance, patch, 'same-docker');
          const inLocal = await gradeWith(local, instance, patch, 'same-local');
          expect(inDocker.summary.resolved).toBe(inLocal.summary.resolved);
          expect(inDocker.report.statuses).toEqual(inLocal.report.statuses);
          expect(Object.keys(inDocker.report.statuses).length).toBeGreaterThan(100);
        }
      }
    });

    it('labels containers with run, workflow and worker, and removes them on destroy', async () => {
      const backend = pool.docker();
      const s = await backend.create({
        sandboxId: 'labelled',
        instanceId: instances[0]!.instance_id,
        baseCommit: instances[0]!.base_commit,
        image: taskImageName(instances[0]!),
        runId: 'run-7',
        workflowId: 'wf-7',
        limits: sandboxLimitsSchema.parse({ memoryMb: 300, pids: 99, cpus: 0.5 }),
      });
      const info = await s.container.inspect();
      expect(info.Config.Labels).toMatchObject({
        [SANDBOX_LABEL]: 'labelled',
        'entropo.run': 'run-7',
        'entropo.workflow': 'wf-7',
      });
      expect(info.HostConfig).toMatchObject({
        NetworkMode: 'none',
        Memory: 300 * 1024 * 1024,
        PidsLimit: 99,
        NanoCpus: 500_000_000,
        ReadonlyRootfs: true,
      });
      await backend.destroy('labelled');
      expect((await backend.listManaged()).map((c) => c.sandboxId)).not.toContain('labelled');
    });

    it('sweeps containers of a dead worker and of closed workflows, keeps its own and open ones', async () => {
      const backend = new DockerSandboxBackend();
      const image = taskImageName(instances[0]!);
      const dead = require('node:child_process').spawnSync('true').pid as number;
      // Containers as other workers would have left them: create through the API with their labels.
      for (const [id, pid, workflow] of [
        ['orphan-dead-worker', dead, 'wf-open'],
        ['orphan-closed-wf', process.pid + 1_000_000, 'wf-closed'],
        ['alive-open-wf', process.pid, 'wf-open'],
      ] as const) {
        await backend.docker.createContainer({
          name: `entropo-${id}`,
          Image: image,
          Cmd: ['sleep', 'infinity'],
          Labels: {
            [SANDBOX_LABEL]: id,
            'entropo.hostname': workflow === 'wf-closed' ? 'another-host' : require('node:os').hostname(),
            'entropo.pid': String(pid),
            'entropo.workflow': workflow,
            'entropo.deployment': 'docker-test',
          },
        });
      }
      // Only 'wf-closed' is closed: containers of other test files running beside this one stay.
      const swept = await backend.sweepOrphans({
        deployment: 'docker-test',
        isWorkflowOpen: async (wf) => wf !== 'wf-closed',
      });
      expect(swept.filter((id) => /^(orphan|alive)-/.test(id)).sort()).toEqual([
        'orphan-closed-wf',
        'orphan-dead-worker',
      ]);
      const left = (await backend.listManaged()).map((c) => c.sandboxId);
      expect(left).toContain('alive-open-wf');
      await backend.destroy('alive-open-wf');
    });

    it('names the missing image and says how to build it', async () => {
      const instance = { ...instances[0]!, instance_id: 'never-built' };
      const error = await pool
        .create('docker', {
          sandboxId: 'missing',
          instanceId: instance.instance_id,
          source: instance.source,
          baseCommit: instance.base_commit,
          image: taskImageName(instance),
          limits: sandboxLimitsSchema.parse({}),
        })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DockerImageMissingError);
      expect((error as Error).message).toMatch(
        /sweb\.eval\.x86_64\.never-built:latest .*entropo tasks images/,
      );
    });

    it('reports a sandbox that cannot start with the daemon message', async () => {
      await expect(
        pool.create('docker', {
          sandboxId: 'bad-limits',
          instanceId: instances[0]!.instance_id,
          baseCommit: instances[0]!.base_commit,
          image: taskImageName(instances[0]!),
          limits: sandboxLimitsSchema.parse({ cpus: 512 }), // more CPUs than the machine has
        }),
      ).rejects.toThrow(/docker could not start a sandbox from .*: .*[Rr]ange of CPUs/);
      expect((await pool.docker().listManaged()).map((c) => c.sandboxId)).not.toContain('bad-limits');
    });

    it('talks to the engine named by sandbox.docker.host', async () => {
      const s = await pool.create('docker', {
        sandboxId: 'by-host',
        instanceId: instances[0]!.instance_id,
        baseCommit: instances[0]!.base_commit,
        image: taskImageName(instances[0]!),
        limits: sandboxLimitsSchema.parse({}),
        docker: {
          host: 'unix:///var/run/docker.sock',
          workdir: '/testbed',
          readOnlyRootfs: true,
          tmpfsMb: 64,
        },
      });
      expect((await s.exec('echo via-socket', OPTS)).stdout).toBe('via-socket\n');
      await pool.destroy('by-host');
    });
  });
}
