import * as fs from 'node:fs';
import * as path from 'node:path';
import { PROJECT_ROOT } from '../../activities/paths';
import type { PipelineConfigInput } from '../../domain/pipelineConfig';
import { fixtureInstances, writeInstances } from './env';
import { completion, type ScriptedOpenAI, startScriptedOpenAI } from './scriptedOpenAI';

/** What the pipeline's tests (and the replay recorder) run: a scripted agent and a small run config. */

/** The project's converted SmolLM2 (converting takes ~20 s), not the isolated home's. */
export function baseModel(): string {
  const dir = path.join(PROJECT_ROOT, '.entropo', 'models');
  const converted = fs.existsSync(dir)
    ? fs.readdirSync(dir).find((d) => d.startsWith('SmolLM2-135M') && !d.includes('.tmp'))
    : undefined;
  return converted ? path.join(dir, converted) : 'smollm2-135m';
}

/** One edit (a comment appended to the package), then submit: a patch that resolves nothing and breaks nothing. */
export const EDIT =
  'I will note the module.\n<function=execute_bash>\n<parameter=command>echo "# looked at" >> inflection/__init__.py</parameter>\n</function>';
export const SUBMIT = 'Done.\n<function=finish>\n<parameter=command>submit</parameter>\n</function>';

/**
 * A scripted OpenAI-compatible model server (outside our system): the first reply of an episode edits, the
 * next submits; its health check and adapter loading answer 200.
 */
export function startScriptedAgent(): Promise<ScriptedOpenAI> {
  return startScriptedOpenAI((request) => {
    if (request.path.endsWith('/chat/completions')) {
      const messages = request.body.messages as { role: string }[];
      const replies = messages.filter((m) => m.role === 'assistant').length;
      return { body: completion(replies === 0 ? EDIT : SUBMIT) };
    }
    return { body: {} };
  });
}

/** Two training tasks and one held-out task of the fixture repository, tiny budgets. */
export function smallPipelineConfig(
  home: string,
  runId: string,
  serving: PipelineConfigInput['serving'],
): PipelineConfigInput {
  const [a, b, c] = fixtureInstances();
  const tiny = { maxSteps: 1, batchSize: 1, maxLength: 3072 };
  return {
    runId,
    model: { base: baseModel(), servedName: 'scripted' },
    suites: {
      train: writeInstances(home, [a!, b!], 'train.jsonl'),
      test: writeInstances(home, [c!], 'test.jsonl'),
    },
    serving,
    sft: { train: tiny },
    pool: { n: 2, concurrency: 4, limits: { maxSteps: 3 } },
    entropo: { train: tiny },
    verifier: { train: { ...tiny, batchSize: 2 } },
    tts: { n: 2, concurrency: 4, limits: { maxSteps: 3 } },
    grading: { testTimeoutSec: 300 },
  };
}
