import * as fs from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { jsonErrorLine } from '../domain/jsonRows';
import { InvalidInputError } from '../domain/schemaErrors';

/**
 * Reads a run config document (JSON, or YAML for .yaml/.yml), naming the file and line of syntax errors.
 * An empty YAML file is `null`: `checkRunConfig` says so, the same way for every caller.
 */
export function readConfigDocument(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new InvalidInputError(`config file ${file}`, [{ file, field: '', message: (e as Error).message }]);
  }
  if (/\.ya?ml$/i.test(file)) {
    try {
      return parseYaml(text);
    } catch (e) {
      const line = (e as { linePos?: { line: number }[] }).linePos?.[0]?.line;
      throw new InvalidInputError(`config file ${file}`, [
        { file, line, field: '', message: (e as Error).message },
      ]);
    }
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new InvalidInputError(`config file ${file}`, [
      { file, line: jsonErrorLine(text, e), field: '', message: `not valid JSON: ${(e as Error).message}` },
    ]);
  }
}
