import { directoryListing, editorTarget, type PathState, runFileEditor } from '../domain/agent/fileEditor';
import { bashObservation } from '../domain/agent/observations';
import { resolveRepoPath, shellQuote } from '../domain/agent/repoPaths';
import { searchCommand, searchObservation } from '../domain/agent/search';
import type { ToolAction } from '../domain/agent/toolActions';
import type { UndoHistory } from '../domain/agent/undoHistory';
import type { Sandbox } from './sandboxBackend';

/**
 * The four tools of the R2E scaffold over the `Sandbox` primitives (exec, read and write a file), so they
 * work the same on every backend. The logic (what a view shows, when a replacement is ambiguous) is in
 * `domain/agent/`; this file only reads and writes.
 */

export interface ToolRun {
  /** What the model sees next; null after `finish`. */
  observation: string | null;
  history: UndoHistory;
  submitted: boolean;
  /** Whether the tool may have changed the repository (the rollout then checkpoints it). */
  mayHaveChanged: boolean;
}

export interface ToolLimits {
  commandTimeoutSec: number;
  outputLimitBytes: number;
  signal?: AbortSignal;
}

export async function runTool(
  sandbox: Sandbox,
  action: ToolAction,
  history: UndoHistory,
  limits: ToolLimits,
): Promise<ToolRun> {
  const repoRoot = sandbox.repoPath;
  const exec = (command: string) =>
    sandbox.exec(command, {
      timeoutSec: limits.commandTimeoutSec,
      outputLimitBytes: limits.outputLimitBytes,
      signal: limits.signal,
    });
  switch (action.tool) {
    case 'finish':
      return { observation: null, history, submitted: true, mayHaveChanged: false };
    case 'execute_bash': {
      const result = await exec(action.cmd);
      return {
        observation: bashObservation(result, { timeoutSec: limits.commandTimeoutSec }),
        history,
        submitted: false,
        mayHaveChanged: true,
      };
    }
    case 'search': {
      const target = resolveRepoPath(action.path, repoRoot);
      if (!target.ok)
        return { observation: target.message, history, submitted: false, mayHaveChanged: false };
      const result = await exec(searchCommand(action.searchTerm, target.path));
      return {
        observation: searchObservation(action.searchTerm, target.path, result, { repoRoot }),
        history,
        submitted: false,
        mayHaveChanged: false,
      };
    }
    case 'file_editor': {
      const target = editorTarget(action, repoRoot);
      if (!target.ok)
        return { observation: target.observation, history, submitted: false, mayHaveChanged: false };
      const state = await pathState(sandbox, target.path.relative, limits);
      const outcome = runFileEditor(action, target.path, state, history, { repoRoot });
      if (outcome.kind === 'list_directory') {
        const result = await exec(outcome.command);
        return {
          observation: directoryListing(target.path.relative, result, { repoRoot }),
          history,
          submitted: false,
          mayHaveChanged: false,
        };
      }
      const change = outcome.change;
      if (change && 'remove' in change) await exec(`rm -f -- ${shellQuote(change.path)}`);
      else if (change) {
        const failure = await writeInside(sandbox, change.path, change.content, limits);
        // A write the sandbox refuses (a read-only path) is the model's to see, not an error of the episode.
        if (failure) return { observation: failure, history, submitted: false, mayHaveChanged: false };
      }
      return {
        observation: outcome.observation,
        history: outcome.history,
        submitted: false,
        mayHaveChanged: !!change,
      };
    }
  }
}

/** The largest file the editor reads whole (it shows at most a clipped view of it anyway). */
const MAX_EDITOR_FILE_BYTES = 4 * 1024 * 1024;

/**
 * What is at a repository path: nothing, a directory, or a file and its text. Read by a command inside the
 * sandbox, never from the host side: a symbolic link the agent made must resolve in the sandbox's view.
 */
async function pathState(sandbox: Sandbox, relative: string, limits: ToolLimits): Promise<PathState> {
  const p = shellQuote(relative);
  const result = await sandbox.exec(
    `if [ -d ${p} ]; then echo directory; elif [ -f ${p} ]; then echo file; head -c ${MAX_EDITOR_FILE_BYTES + 1} -- ${p}; else echo missing; fi`,
    {
      timeoutSec: limits.commandTimeoutSec,
      outputLimitBytes: MAX_EDITOR_FILE_BYTES + 64,
      signal: limits.signal,
    },
  );
  const newline = result.stdout.indexOf('\n');
  const kind = newline < 0 ? result.stdout : result.stdout.slice(0, newline);
  if (kind === 'directory') return { kind: 'directory' };
  if (kind !== 'file') return { kind: 'missing' };
  const content = result.stdout.slice(newline + 1);
  if (Buffer.byteLength(content) > MAX_EDITOR_FILE_BYTES) {
    return { kind: 'file', content: '\0' }; // shown to the model as a file the editor does not handle
  }
  return { kind: 'file', content };
}

/**
 * Writes a file by a command inside the sandbox (stdin), for the same reason reads go through one. Returns
 * the observation of a refused write, or null.
 */
async function writeInside(
  sandbox: Sandbox,
  relative: string,
  content: string,
  limits: ToolLimits,
): Promise<string | null> {
  const p = shellQuote(relative);
  const result = await sandbox.exec(`mkdir -p -- "$(dirname -- ${p})" && cat > ${p}`, {
    timeoutSec: limits.commandTimeoutSec,
    outputLimitBytes: 64 * 1024,
    stdin: content,
    signal: limits.signal,
  });
  if (result.exitCode === 0) return null;
  return `The edit was not saved: writing ${relative} failed (exit code ${result.exitCode ?? -1}): ${result.stderr.trim()}`;
}
