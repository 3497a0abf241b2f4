import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  jsonLines,
  toEngineTrajectory,
  toShareGpt,
  toSwebenchPrediction,
} from '../../../domain/agent/exporters';
import { episodeLimitsSchema } from '../../../domain/agent/limits';
import { parseTrajectoryFile, type TrajectoryRecord, trajectoryLine } from '../../../domain/agent/trajectory';

const texts: Record<string, string> = {
  sys: 'You are a programming agent.',
  task: 'Fix the bug.',
  obs1: 'Exit code: 0\n[STDOUT]\na.py',
  obs2: 'File created successfully at /testbed/x.py.',
};
const text = (id: string) => {
  if (!(id in texts)) throw new Error(`no text ${id}`);
  return texts[id]!;
};
const step = (index: number, rawOutput: string, observationId: string | null) => ({
  index,
  thought: rawOutput.split('<function=')[0]!.trim(),
  rawOutput,
  call: null,
  observationId,
  tokensIn: 100 * index,
  tokensOut: 20,
  llmMs: 5,
  toolMs: 3,
});

const record: TrajectoryRecord = {
  schemaVersion: 1,
  runId: 'run-1',
  rolloutId: 'run-1/t1/0',
  taskId: 'pkg__pkg-1',
  policy: { kind: 'engine', model: 'smollm2-135m' },
  sampling: { temperature: 0.7, topP: 0.8, topK: 20 },
  seed: 7,
  limits: episodeLimitsSchema.parse({}),
  systemPromptId: 'sys',
  taskMessageId: 'task',
  steps: [
    step(1, 'Look.\n<function=execute_bash><parameter=cmd>ls</parameter></function>', 'obs1'),
    step(2, '<function=file_editor>…</function>', 'obs2'),
    step(3, 'Done.\n<function=finish><parameter=command>submit</parameter></function>', null),
  ],
  exitReason: 'submitted',
  patch: 'diff --git a/x.py b/x.py\n',
  gradingReportId: 'report-1',
  resolved: true,
  reward: 1,
  startedAt: '2026-11-22T03:00:00.000Z',
  finishedAt: '2026-11-22T03:01:00.000Z',
};

describe('trajectory records', () => {
  it('one JSON line per rollout, read back equal', () => {
    const line = trajectoryLine(record);
    expect(line).not.toContain('\n');
    expect(parseTrajectoryFile(`${line}\n\n${line}\n`, 'traj.jsonl')).toEqual({
      records: [record, record],
      problems: [],
    });
  });

  it('names the file, line and field of a bad record', () => {
    const bad = JSON.stringify({
      ...record,
      exitReason: 'crashed',
      steps: [{ ...record.steps[0], tokensIn: -1 }],
    });
    const { problems } = parseTrajectoryFile(`${trajectoryLine(record)}\n${bad}\n`, 'traj.jsonl');
    expect(problems.map((p) => `${p.file}:${p.line} ${p.field}`)).toEqual([
      'traj.jsonl:2 steps[0].tokensIn',
      'traj.jsonl:2 exitReason',
    ]);
  });
});

describe('exporters', () => {
  it('SWE-bench prediction', () => {
    expect(toSwebenchPrediction(record)).toEqual({
      instance_id: 'pkg__pkg-1',
      model_name_or_path: 'smollm2-135m',
      model_patch: 'diff --git a/x.py b/x.py\n',
    });
    expect(toSwebenchPrediction(record, 'entropo-kto').model_name_or_path).toBe('entropo-kto');
  });

  it('ShareGPT: task, replies and observations alternating, ending on the last reply', () => {
    expect(toShareGpt(record, text, { ktoTag: true })).toEqual({
      id: 'run-1/t1/0',
      system: texts.sys,
      conversations: [
        { from: 'human', value: texts.task },
        { from: 'gpt', value: record.steps[0]!.rawOutput },
        { from: 'observation', value: texts.obs1 },
        { from: 'gpt', value: record.steps[1]!.rawOutput },
        { from: 'observation', value: texts.obs2 },
        { from: 'gpt', value: record.steps[2]!.rawOutput },
      ],
      kto_tag: true,
    });
  });

  it('ShareGPT drops an observation after the last reply; no reply, no row', () => {
    const cut = { ...record, steps: record.steps.slice(0, 2), exitReason: 'step_limit' as const };
    expect(toShareGpt(cut, text)!.conversations.at(-1)).toEqual({
      from: 'gpt',
      value: record.steps[1]!.rawOutput,
    });
    expect(toShareGpt({ ...record, steps: [] }, text)).toBeNull();
    expect(() => toShareGpt({ ...record, resolved: null }, text, { ktoTag: true })).toThrow(/not graded/);
  });

  it("the engine's data reader reads both exports back as the same conversation", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'entropo-export-'));
    const sharegpt = path.join(dir, 'sharegpt.jsonl');
    const engine = path.join(dir, 'trajectories.jsonl');
    fs.writeFileSync(sharegpt, jsonLines([toShareGpt(record, text, { ktoTag: true })]));
    fs.writeFileSync(engine, jsonLines([toEngineTrajectory(record, text)]));
    const python = path.resolve(__dirname, '../../../.venv/bin/python');
    const script = [
      'import json, sys',
      'from entropo_engine.data import read_records, require',
      'out = []',
      'for f in sys.argv[1:]:',
      '    recs = read_records(f)',
      '    require(recs, "entropo-kto")',
      '    out.append([{"id": r.id, "label": r.label, "messages": r.chosen} for r in recs])',
      'print(json.dumps(out))',
    ].join('\n');
    const read = JSON.parse(
      execFileSync(python, ['-c', script, sharegpt, engine], {
        cwd: path.resolve(__dirname, '../../../engine'),
      }).toString(),
    );
    fs.rmSync(dir, { recursive: true });
    const messages = [
      { role: 'system', content: texts.sys },
      { role: 'user', content: texts.task },
      { role: 'assistant', content: record.steps[0]!.rawOutput },
      { role: 'tool', content: texts.obs1 },
      { role: 'assistant', content: record.steps[1]!.rawOutput },
      { role: 'tool', content: texts.obs2 },
      { role: 'assistant', content: record.steps[2]!.rawOutput },
    ];
    expect(read).toEqual([
      [{ id: 'run-1/t1/0', label: true, messages }],
      [{ id: 'run-1/t1/0', label: true, messages }],
    ]);
  });
});
