import * as fs from 'node:fs';
import * as path from 'node:path';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';
import { Worker } from '@temporalio/worker';
import { describe, expect, it } from 'vitest';
import { quietRuntime } from '../helpers/temporal';

/** Recorded histories must replay against today's workflow code: a change that breaks them is non-deterministic. */
describe('replay of recorded histories', () => {
  it('replays every recorded history without a determinism error', async () => {
    quietRuntime();
    const dir = path.join(__dirname, 'histories');
    // Child workflow ids derive from the parent's id, so each history replays under its recorded id.
    const ids = JSON.parse(fs.readFileSync(path.join(dir, 'workflow-ids.json'), 'utf8')) as Record<
      string,
      string
    >;
    const files = Object.keys(ids).sort();
    expect(files).toEqual([
      'gradeInstance.json',
      'pipeline.json',
      'poolStage.json',
      'rollout.json',
      'rolloutPool.json',
      'sftStage.json',
      'ttsStage.json',
      'validateTasks.json',
    ]);
    const histories = files.map((f) => ({
      workflowId: ids[f]!,
      history: historyFromJSON(JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'))),
    }));
    const results = [];
    for await (const result of Worker.runReplayHistories(
      { workflowsPath: path.join(__dirname, '..', '..', 'workflows', 'index.ts'), replayName: 'ci-replay' },
      histories,
    )) {
      results.push(result);
    }
    expect(results).toHaveLength(files.length);
    for (const r of results) expect(r.error, `${r.workflowId}: ${r.error?.message}`).toBeUndefined();
  });
});
