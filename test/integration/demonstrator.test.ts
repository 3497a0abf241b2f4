import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../activities/paths';
import { editorTarget, runFileEditor } from '../../domain/agent/fileEditor';
import { toToolAction } from '../../domain/agent/toolActions';
import { parseToolCall } from '../../domain/agent/toolCall';
import { emptyUndoHistory } from '../../domain/agent/undoHistory';
import { planDemonstration } from '../../domain/demonstrator';
import { filesInPatch, parseInstancesOrThrow } from '../../domain/instance';

/**
 * The demonstrator's replies, read by the real parser and carried out by the real file editor, leave every
 * bundled training task's repository exactly as `git apply` of the gold patch does.
 */

const SUITE = path.join(PROJECT_ROOT, 'tasks', 'quickstart');
const REPO_ROOT = '/testbed';
const git = (cwd: string, ...args: string[]) =>
  execFileSync('git', args, { cwd, encoding: 'utf8', maxBuffer: 1 << 26 });

describe('the gold-patch demonstrator on the bundled quickstart suite', () => {
  const instances = parseInstancesOrThrow(
    fs.readFileSync(path.join(SUITE, 'instances.jsonl'), 'utf8'),
    'instances.jsonl',
  );

  it.each(instances.map((i) => [i.instance_id, i] as const))(
    '%s: editor result equals git apply',
    (_id, instance) => {
      const source = path.resolve(SUITE, (instance.source as { path: string }).path);
      const changed = filesInPatch(instance.patch);
      const baseFiles = Object.fromEntries(
        changed.map((f) => [f, git(source, 'show', `${instance.base_commit}:${f}`)]),
      );
      const repoFiles = git(source, 'ls-tree', '-r', '--name-only', instance.base_commit).trim().split('\n');
      const replies = planDemonstration({ patch: instance.patch, repoPath: REPO_ROOT, baseFiles, repoFiles });

      // Carry the replies out on in-memory files, as the tool activity would in a sandbox.
      const files = new Map(Object.entries(baseFiles));
      let history = emptyUndoHistory();
      const tools: string[] = [];
      for (const reply of replies) {
        const parsed = parseToolCall(reply);
        expect(parsed.ok, reply).toBe(true);
        if (!parsed.ok) continue;
        const action = toToolAction(parsed.call);
        expect(action.ok, reply).toBe(true);
        if (!action.ok) continue;
        tools.push(action.action.tool === 'file_editor' ? action.action.command : action.action.tool);
        if (action.action.tool !== 'file_editor') continue;
        const target = editorTarget(action.action, REPO_ROOT);
        if (!target.ok) throw new Error(target.observation);
        const content = files.get(target.path.relative);
        const outcome = runFileEditor(
          action.action,
          target.path,
          content === undefined ? { kind: 'missing' } : { kind: 'file', content },
          history,
          { repoRoot: REPO_ROOT },
        );
        if (outcome.kind !== 'observation') throw new Error(`unexpected ${outcome.kind}`);
        expect(outcome.observation).not.toMatch(
          /No replacement was made|does not exist|already exists|past the end/,
        );
        history = outcome.history;
        if (outcome.change && 'content' in outcome.change)
          files.set(outcome.change.path, outcome.change.content);
      }
      expect(tools[0]).toBe('view');
      expect(tools).toContain('str_replace');
      expect(tools.slice(-2)).toEqual(['execute_bash', 'finish']);
      // The test run names only files already in the repository, never the hidden test patch's.
      const testRun = replies.at(-2)!;
      for (const f of filesInPatch(instance.test_patch))
        if (!repoFiles.includes(f)) expect(testRun).not.toContain(f);

      const work = fs.mkdtempSync(path.join(os.tmpdir(), 'entropo-demo-'));
      try {
        git(work, 'clone', '--quiet', '--no-checkout', source, 'repo');
        const repo = path.join(work, 'repo');
        git(repo, 'checkout', '--quiet', '--detach', instance.base_commit);
        fs.writeFileSync(path.join(work, 'gold.patch'), instance.patch);
        git(repo, 'apply', path.join(work, 'gold.patch'));
        for (const f of changed) expect(files.get(f), f).toBe(fs.readFileSync(path.join(repo, f), 'utf8'));
      } finally {
        fs.rmSync(work, { recursive: true, force: true });
      }
    },
  );
});
