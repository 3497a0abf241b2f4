/**
 * Records workflow histories for the replay test against a fresh dev server, as JSON fixtures:
 *   validate – `validateTasksWorkflow` on one fixture instance, and one grading child;
 *   rollouts – `rolloutPoolWorkflow` with the demonstrator on one fixture instance, and its rollout child;
 *   pipeline – `pipelineWorkflow` on the pipeline test's small run (scripted agent, tiny training), with its
 *              sft, pool and tts stage children.
 *
 *   npm run record-histories [-- validate|rollouts ...]      (default: all)
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
import { smallPipelineConfig, startScriptedAgent } from '../helpers/pipelineRun';
import { startTestTemporal, startTestWorkers, type TestTemporal } from '../helpers/temporal';

const SETS: Record<string, (temporal: TestTemporal, file: string) => Promise<Record<string, string>>> = {
  async validate(temporal, file) {
    const workflowId = 'validate/recorded';
    await temporal.client.workflow.execute('validateTasksWorkflow', {
      taskQueue: 'record-cpu',
      workflowId,
      args: [{ runId: 'recorded', instances: file, grading: { concurrency: 2 } }],
    });
    const child = `${workflowId}/grade/${fixtureInstances()[0]!.instance_id}/gold`;
    return { 'validateTasks.json': workflowId, 'gradeInstance.json': child };
  },
  async rollouts(temporal, file) {
    const workflowId = 'rollouts/recorded';
    await temporal.client.workflow.execute('rolloutPoolWorkflow', {
      taskQueue: 'record-cpu',
      workflowId,
      args: [{ runId: 'recorded', instances: file, policy: { kind: 'demonstrator' }, n: 1 }],
    });
    const child = `${workflowId}/rollout/${fixtureInstances()[0]!.instance_id}/0`;
    return { 'rolloutPool.json': workflowId, 'rollout.json': child };
  },
  async pipeline(temporal, _file) {
    const agent = await startScriptedAgent();
    try {
      const workflowId = 'run/recorded';
      await temporal.client.workflow.execute('pipelineWorkflow', {
        taskQueue: 'record-cpu',
        workflowId,
        args: [
          smallPipelineConfig(process.env.ENTROPO_HOME!, 'recorded', {
            kind: 'external',
            baseUrl: agent.baseUrl,
          }),
        ],
      });
      const progress = await temporal.client.workflow
        .getHandle(workflowId)
        .query<{ stages: { stage: string; workflowId?: string }[] }>('progress');
      const stageId = (stage: string) => progress.stages.find((s) => s.stage === stage)!.workflowId!;
      return {
        'pipeline.json': workflowId,
        'sftStage.json': stageId('sft'),
        'poolStage.json': stageId('pool'),
        'ttsStage.json': `${stageId('tts')}/entropo`,
      };
    } finally {
      await agent.close();
    }
  },
};

async function main() {
  const wanted = process.argv.slice(2).length > 0 ? process.argv.slice(2) : Object.keys(SETS);
  const home = isolatedHome('record');
  const temporal = await startTestTemporal(home);
  const workers = await startTestWorkers(temporal.address, 'record', ['cpu', 'sandbox', 'llm', 'gpu']);
  const out = path.join(__dirname, 'histories');
  const idsFile = path.join(out, 'workflow-ids.json');
  try {
    const file = writeInstances(home, fixtureInstances().slice(0, 1));
    fs.mkdirSync(out, { recursive: true });
    const ids = fs.existsSync(idsFile)
      ? (JSON.parse(fs.readFileSync(idsFile, 'utf8')) as Record<string, string>)
      : {};
    for (const set of wanted) {
      const record = SETS[set];
      if (!record) throw new Error(`unknown history set ${set} (expected ${Object.keys(SETS).join(', ')})`);
      for (const [name, id] of Object.entries(await record(temporal, file))) {
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
        fs.writeFileSync(path.join(out, name), stdout);
        ids[name] = id;
        process.stderr.write(`recorded ${name} (${JSON.parse(stdout).events.length} events)\n`);
      }
    }
    fs.writeFileSync(idsFile, `${JSON.stringify(ids, null, 2)}\n`);
  } finally {
    await workers.stop();
    await temporal.close();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
