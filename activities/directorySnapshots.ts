import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { ArtifactRef, ArtifactStore } from './artifacts';

/**
 * A directory (a training checkpoint, a trained adapter) in the artifact store: each file is stored by its
 * content, and a manifest — itself an artifact — lists the files' relative paths and ids. Identical files
 * are stored once, so successive checkpoints of a job cost only what changed. Restoring writes the whole
 * directory beside its target and renames it into place: a reader sees all of it or none of it.
 */

export interface DirectoryManifest {
  kind: 'directory';
  files: { path: string; id: string; bytes: number }[];
}

async function filesUnder(root: string): Promise<string[]> {
  const entries = await fs.readdir(root, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => path.relative(root, path.join(e.parentPath, e.name)))
    .sort();
}

/** Stores every regular file under `dir`; returns the manifest's ref. */
export async function putDirectory(store: ArtifactStore, dir: string): Promise<ArtifactRef> {
  const files: DirectoryManifest['files'] = [];
  for (const relative of await filesUnder(dir)) {
    const ref = await store.put(await fs.readFile(path.join(dir, relative)));
    files.push({ path: relative, id: ref.id, bytes: ref.bytes });
  }
  const manifest: DirectoryManifest = { kind: 'directory', files };
  return store.putJson(manifest);
}

/** Writes the directory stored as `manifestId` to `dir`, replacing whatever was there. */
export async function restoreDirectory(store: ArtifactStore, manifestId: string, dir: string): Promise<void> {
  const manifest = await store.getJson<DirectoryManifest>(manifestId);
  if (manifest.kind !== 'directory' || !Array.isArray(manifest.files))
    throw new Error(`artifact ${manifestId} is not a directory manifest`);
  const temp = path.join(
    path.dirname(dir),
    `.restore-${path.basename(dir)}-${randomBytes(4).toString('hex')}`,
  );
  await fs.mkdir(temp, { recursive: true });
  try {
    for (const file of manifest.files) {
      const target = path.resolve(temp, file.path);
      if (!target.startsWith(`${temp}${path.sep}`))
        throw new Error(`directory manifest ${manifestId} names a path outside it: ${file.path}`);
      await fs.mkdir(path.dirname(target), { recursive: true });
      await fs.writeFile(target, await store.get(file.id));
    }
    await fs.rm(dir, { recursive: true, force: true });
    await fs.rename(temp, dir);
  } finally {
    await fs.rm(temp, { recursive: true, force: true });
  }
}
