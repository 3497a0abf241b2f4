import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { artifactsDir } from './paths';

/**
 * Content-addressed artifact store on the filesystem. Workflows carry {@link ArtifactRef}s (claim
 * checks), never the bytes: trajectories, logs, datasets and reports live here.
 *
 * Layout: `<root>/sha256/<2 hex>/<64 hex>`. Writes go to a temporary file in the same directory and are
 * renamed into place, so a reader never sees a partial artifact; reads re-hash the bytes. Beside them,
 * `<root>/records/` holds small JSON records found by a name rather than by content (see `putRecord`).
 */

export interface ArtifactRef {
  /** `sha256:<64 hex>` of the content. */
  id: string;
  bytes: number;
}

const ID_PATTERN = /^sha256:([0-9a-f]{64})$/;

export class ArtifactIntegrityError extends Error {
  override name = 'ArtifactIntegrityError';
}

export class ArtifactStore {
  constructor(readonly root: string = artifactsDir()) {}

  pathOf(id: string): string {
    const match = ID_PATTERN.exec(id);
    if (!match) throw new Error(`not an artifact id: ${JSON.stringify(id)} (expected sha256:<64 hex>)`);
    const hex = match[1]!;
    return path.join(this.root, 'sha256', hex.slice(0, 2), hex);
  }

  async put(data: Buffer | string): Promise<ArtifactRef> {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    const id = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    const target = this.pathOf(id);
    try {
      await fs.access(target);
      return { id, bytes: bytes.length }; // same content already stored
    } catch {
      // not stored yet
    }
    await writeAtomically(target, bytes);
    return { id, bytes: bytes.length };
  }

  async get(id: string): Promise<Buffer> {
    const target = this.pathOf(id);
    let bytes: Buffer;
    try {
      bytes = await fs.readFile(target);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new Error(`artifact ${id} not found in ${this.root}`);
      }
      throw e;
    }
    const actual = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    if (actual !== id)
      throw new ArtifactIntegrityError(`artifact ${id} is corrupt on disk (content hashes to ${actual})`);
    return bytes;
  }

  async has(id: string): Promise<boolean> {
    try {
      await fs.access(this.pathOf(id));
      return true;
    } catch {
      return false;
    }
  }

  putJson(value: unknown): Promise<ArtifactRef> {
    return this.put(`${JSON.stringify(value, null, 2)}\n`);
  }

  async getJson<T>(id: string): Promise<T> {
    return JSON.parse((await this.get(id)).toString('utf8')) as T;
  }

  async getText(id: string): Promise<string> {
    return (await this.get(id)).toString('utf8');
  }

  /**
   * Where the record named `key` lives: `<root>/records/<2 hex>/<64 hex>.json`, the hex being the sha256 of
   * the key. Unlike artifacts, records are found by a name the caller chooses (e.g. the identity of a
   * finished unit of work), so a later attempt can look one up without knowing its content.
   */
  recordPathOf(key: string): string {
    const hex = createHash('sha256').update(key).digest('hex');
    return path.join(this.root, 'records', hex.slice(0, 2), `${hex}.json`);
  }

  /** Stores `value` (JSON) under `key`, replacing any earlier record; a reader sees the old or the new one. */
  async putRecord(key: string, value: unknown): Promise<void> {
    const document: StoredRecord = { key, value };
    await writeAtomically(this.recordPathOf(key), Buffer.from(`${JSON.stringify(document)}\n`, 'utf8'));
  }

  /** The record stored under `key`, or undefined when there is none. */
  async getRecord<T>(key: string): Promise<{ value: T } | undefined> {
    const file = this.recordPathOf(key);
    let text: string;
    try {
      text = await fs.readFile(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
    let document: StoredRecord;
    try {
      document = JSON.parse(text) as StoredRecord;
    } catch {
      throw new ArtifactIntegrityError(`record ${file} is corrupt on disk (not JSON)`);
    }
    if (document.key !== key) {
      throw new ArtifactIntegrityError(
        `record ${file} holds key ${JSON.stringify(document.key)}, not ${key}`,
      );
    }
    return { value: document.value as T };
  }
}

interface StoredRecord {
  key: string;
  value: unknown;
}

/** Writes a temporary file beside `target`, syncs it and renames it into place: no reader sees a partial file. */
async function writeAtomically(target: string, bytes: Buffer): Promise<void> {
  await fs.mkdir(path.dirname(target), { recursive: true });
  const temp = `${target}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  const handle = await fs.open(temp, 'w');
  try {
    await handle.writeFile(bytes);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fs.rename(temp, target);
}
