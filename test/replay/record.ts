/**
 * Records workflow histories for the replay test: runs `validateTasksWorkflow` on one fixture instance
 * against a fresh dev server and saves the parent's and a child's history as JSON fixtures.
 *
 *   npm run record-histories
 *
 * Re-record only when a workflow change is meant to be incompatible; otherwise keep old fixtures and
 * guard the change with `patched()`, so that runs in flight keep replaying.
 */

import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { temporalBinary } from '../../infra/devServer';
import { fixtureInstances, isolatedHome, writeInstances } from '../helpers/env';
import { startTestTemporal, startTestWorkers } from '../helpers/temporal';

async function main() {
  const home = isolatedHome('record');
  const temporal = await startTestTemporal(home);
  const workers = await startTestWorkers(temporal.address, 'record');
  try {
    const file = writeInstances(home, fixtureInstances().slice(0, 1));
    const workflowId = 'validate/recorded';
    await temporal.client.workflow.execute('validateTasksWorkflow', {
      taskQueue: 'record-cpu',
      workflowId,
      args: [{ runId: 'recorded', instances: file, grading: { concurrency: 2 } }],
    });
    const child = `${workflowId}/grade/${fixtureInstances()[0]!.instance_id}/gold`;
    const out = path.join(__dirname, 'histories');
    fs.mkdirSync(out, { recursive: true });
    const ids = { 'validateTasks.json': workflowId, 'gradeInstance.json': child };
    fs.writeFileSync(path.join(out, 'workflow-ids.json'), `${JSON.stringify(ids, null, 2)}\n`);
    for (const [name, id] of [
      ['validateTasks', workflowId],
      ['gradeInstance', child],
    ] as const) {
      // The temporal CLI writes the standard JSON history format that every Temporal tool reads.
      const { stdout } = await promisify(execFile)(temporalBinary(), [
        'workflow',
        'show',
        '--address',
        temporal.address,
        '--workflow-id',
        id,
        '--output',
        'json',
      ]);
      fs.writeFileSync(path.join(out, `${name}.json`), stdout);
      process.stderr.write(`recorded ${name}.json (${JSON.parse(stdout).events.length} events)\n`);
    }
  } finally {
    await workers.stop();
    await temporal.close();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
