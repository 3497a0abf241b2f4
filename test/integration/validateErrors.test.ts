import { type ChildProcess, execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../activities/paths';
import type { InstanceVerdict } from '../../domain/validation';
import { dockerOrExplain } from '../helpers/docker';
import { fixtureInstances, isolatedHome, writeInstances } from '../helpers/env';
import {
  startTestTemporal,
  startWorkerProcess as startWorkerProcessIn,
  type TestTemporal,
} from '../helpers/temporal';

/**
 * Issue: a missing docker image made `tasks validate` report the instance INVALID (exit 1), exactly like a
 * broken task. It must be reported as an error with its cause, apart from valid and invalid instances, and
 * the command must exit 3. Server, worker and CLI run as separate processes, as a user runs them.
 */

const home = isolatedHome('validate-errors');
const PREFIX = 'validate-errors-test';
const workers: ChildProcess[] = [];
let temporal: TestTemporal;

async function validate(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(
      path.join(PROJECT_ROOT, 'bin', 'entropo'),
      ['tasks', 'validate', ...args],
      {
        env: {
          ...process.env,
          ENTROPO_HOME: home,
          TEMPORAL_ADDRESS: temporal.address,
          ENTROPO_TASK_QUEUE_PREFIX: PREFIX,
        },
      },
    );
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

if (dockerOrExplain('tasks validate with a missing docker image')) {
  beforeAll(async () => {
    temporal = await startTestTemporal(home);
    await startWorkerProcessIn(temporal.address, { queuePrefix: PREFIX, home, started: workers });
  });
  afterAll(async () => {
    for (const w of workers) w.kill('SIGKILL');
    await temporal?.close();
  });

  describe('tasks validate', () => {
    it('reports instances it could not judge as errors with their cause, apart from invalid ones, exit 3', async () => {
      const [good] = fixtureInstances();
      const rows = [
        good!,
        // The task's own fault: invalid.
        { ...good!, instance_id: 'no-source', source: undefined },
        // A docker image nobody built: the setup's fault, not the task's.
        { ...good!, instance_id: 'no-image', sandbox_backend: 'docker' },
      ];
      const file = writeInstances(home, rows);
      const r = await validate(file, '--run-id', 'errors');

      expect(r.code, r.stderr).toBe(3);
      const lines = r.stdout.split('\n');
      expect(lines[0]).toBe('1 of 3 instances valid; 1 could not be judged');
      expect(lines).toContain(`  valid    ${good!.instance_id}`);
      expect(r.stdout).toMatch(/^ {2}INVALID {2}no-source: gold grading failed: .*has no "source"/m);
      expect(r.stdout).toMatch(
        /^ {2}ERROR {4}no-image: gold grading could not run: docker image sweb\.eval\.x86_64\.no-image:latest is not in the Docker engine/m,
      );
      expect(r.stdout).not.toMatch(/INVALID {2}no-image/);

      // The report keeps the failure's type beside its message.
      const report = JSON.parse(fs.readFileSync(path.join(home, 'runs', 'errors', 'validation.json'), 'utf8'))
        .verdicts as InstanceVerdict[];
      const noImage = report.find((v) => v.instanceId === 'no-image')!;
      expect(noImage.outcome).toBe('error');
      expect(noImage.gold).toMatchObject({ errorType: 'DockerImageMissingError' });
      expect(noImage.empty).toMatchObject({ errorType: 'DockerImageMissingError' });
      expect(report.find((v) => v.instanceId === 'no-source')!.outcome).toBe('invalid');
      expect(fs.readFileSync(path.join(home, 'runs', 'errors', 'validation.md'), 'utf8')).toContain(
        '1 could not be judged',
      );
    });
  });
}
