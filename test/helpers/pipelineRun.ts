import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PROJECT_ROOT, venvBin } from '../../activities/paths';
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

/**
 * A tiny Llama (2 layers, hidden size 32) with random weights, seeded, and SmolLM2's real tokenizer and
 * chat template, saved as a model directory in `dir`: a real transformers model the engine trains and
 * scores in seconds, for tests about orchestration rather than the model (the chaos test).
 */
export function tinyModel(dir: string): string {
  const target = path.join(dir, 'tiny-llama');
  if (fs.existsSync(path.join(target, 'config.json'))) return target;
  const script = `
import sys, torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
from entropo_engine.models import resolve_model_dir
source, target = resolve_model_dir(sys.argv[1]), sys.argv[2]  # converts the bundled GGUF if not yet done
tokenizer = AutoTokenizer.from_pretrained(source)
torch.manual_seed(0)
config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192,
                     bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
LlamaForCausalLM(config).save_pretrained(target)
tokenizer.save_pretrained(target)
`;
  execFileSync(path.join(venvBin(), 'python'), ['-c', script, baseModel(), target], {
    stdio: 'pipe',
    // A conversion, if one is needed, goes where baseModel() finds it next time.
    env: { ...process.env, ENTROPO_HOME: path.join(PROJECT_ROOT, '.entropo') },
  });
  return target;
}
