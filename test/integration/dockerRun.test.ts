import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DockerSandboxBackend } from '../../activities/dockerSandbox';
import { instanceSchema } from '../../domain/instance';
import type { ValidationProgress } from '../../domain/validation';
import { buildTaskImage } from '../../infra/buildImages';
import type { ValidateTasksResult } from '../../workflows/validateTasks';
import { dockerOrExplain } from '../helpers/docker';
import { fixtureInstances, isolatedHome, writeInstances } from '../helpers/env';
import {
  startTestTemporal,
  startWorkerProcess as startWorkerProcessIn,
  type TestTemporal,
} from '../helpers/temporal';

const home = isolatedHome('docker-run');
const PREFIX = 'docker-run-test';
const RUN_ID = `docker-kill-${process.pid}`;
const workers: ChildProcess[] = [];
let temporal: TestTemporal;

const startWorkerProcess = (address: string) =>
  startWorkerProcessIn(address, { queuePrefix: PREFIX, home, started: workers });

async function runContainers(docker: DockerSandboxBackend): Promise<string[]> {
  return (await docker.listManaged()).filter((c) => c.owner.runId === RUN_ID).map((c) => c.sandboxId);
}

if (dockerOrExplain('validate run in docker sandboxes, killed mid-way')) {
  const docker = new DockerSandboxBackend();
  beforeAll(async () => {
    temporal = await startTestTemporal(home);
    for (const row of fixtureInstances()) await buildTaskImage(instanceSchema.parse(row), { log: () => {} });
  });
  afterAll(async () => {
    for (const w of workers) w.kill('SIGKILL');
    await temporal?.close();
  });

  describe('a validate run in docker sandboxes', () => {
    it('survives its worker being killed mid-grading, gives the local verdicts, and leaves no container', async () => {
      // Each grading holds its container for 5 s or more, so the containers seen just before the kill are
      // still there after it even on a busy machine (with 1 s they had finished in between, once).
      const rows = fixtureInstances().map((r) => ({ ...r, test_command: `sleep 5 && ${r.test_command}` }));
      const file = writeInstances(home, rows);
      const first = await startWorkerProcess(temporal.address);
      const handle = await temporal.client.workflow.start('validateTasksWorkflow', {
        taskQueue: `${PREFIX}-cpu`,
        workflowId: `validate/${RUN_ID}`,
        args: [
          {
            runId: RUN_ID,
            instances: file,
            grading: { concurrency: 2 },
            sandbox: { backend: 'docker', heartbeatTimeoutSec: 10 },
          },
        ],
      });
      let progress: ValidationProgress | undefined;
      let live: string[] = [];
      // Kill once a grading is done and others hold containers, i.e. mid-run.
      for (let i = 0; i < 900 && ((progress?.gradingsDone ?? 0) < 1 || live.length === 0); i++) {
        await new Promise((r) => setTimeout(r, 100));
        progress = await handle.query<ValidationProgress>('progress').catch(() => undefined);
        live = await runContainers(docker);
      }
      expect(live.length).toBeGreaterThan(0);
      first.kill('SIGKILL');
      expect((await runContainers(docker)).length).toBeGreaterThan(0); // the dead worker left containers

      await startWorkerProcess(temporal.address); // sweeps them at start, then finishes the run
      const result = (await handle.result()) as ValidateTasksResult;
      expect(result.valid.sort()).toEqual(
        fixtureInstances()
          .map((r) => r.instance_id as string)
          .sort(),
      );
      expect(result.invalid).toEqual([]);
      expect(await runContainers(docker)).toEqual([]);
    });
  });
}
