import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import { parseInstances, type TaskInstance } from '../domain/instance';
import { describeProblems } from '../domain/schemaErrors';
import { type InstanceVerdict, renderValidationMarkdown } from '../domain/validation';
import type { ArtifactStore } from './artifacts';
import { entropoHome } from './paths';

export interface LoadedInstance {
  instanceId: string;
  /** Artifact id of the instance JSON (claim check). */
  instanceRef: string;
}

/**
 * Reads a SWE-bench JSON/JSONL instance file, rejects it whole (naming every file:line:field problem)
 * when anything is wrong, and stores each instance as an artifact. Relative source paths are resolved
 * against the instance file's directory.
 */
export async function loadInstances(deps: { store: ArtifactStore }, file: string): Promise<LoadedInstance[]> {
  const absolute = path.resolve(file);
  let text: string;
  try {
    text = await fs.readFile(absolute, 'utf8');
  } catch (e) {
    throw ApplicationFailure.nonRetryable(
      `cannot read instance file ${absolute}: ${(e as Error).message}`,
      'BadInput',
    );
  }
  const { instances, problems } = parseInstances(text, file);
  if (problems.length > 0) {
    throw ApplicationFailure.nonRetryable(
      describeProblems(`instance file ${file}`, problems),
      'BadInput',
      problems,
    );
  }
  const loaded: LoadedInstance[] = [];
  for (const instance of instances) {
    const resolved: TaskInstance = { ...instance };
    if (resolved.source && resolved.source.kind !== 'docker_image') {
      resolved.source = {
        ...resolved.source,
        path: path.resolve(path.dirname(absolute), resolved.source.path),
      };
    }
    loaded.push({ instanceId: instance.instance_id, instanceRef: (await deps.store.putJson(resolved)).id });
  }
  return loaded;
}

export interface ValidationReportRefs {
  jsonId: string;
  markdownId: string;
  /** Human-friendly copies under `.entropo/runs/<runId>/`. */
  jsonPath: string;
  markdownPath: string;
}

export async function writeValidationReport(
  deps: { store: ArtifactStore },
  runId: string,
  verdicts: InstanceVerdict[],
): Promise<ValidationReportRefs> {
  const markdown = renderValidationMarkdown(runId, verdicts);
  const json = { runId, verdicts };
  const [jsonRef, markdownRef] = [await deps.store.putJson(json), await deps.store.put(markdown)];
  const dir = path.join(entropoHome(), 'runs', runId);
  await fs.mkdir(dir, { recursive: true });
  const jsonPath = path.join(dir, 'validation.json');
  const markdownPath = path.join(dir, 'validation.md');
  await fs.writeFile(jsonPath, `${JSON.stringify(json, null, 2)}\n`);
  await fs.writeFile(markdownPath, markdown);
  return { jsonId: jsonRef.id, markdownId: markdownRef.id, jsonPath, markdownPath };
}
