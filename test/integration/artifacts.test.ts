import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ArtifactIntegrityError, ArtifactStore } from '../../activities/artifacts';
import { EMPTY_CONTENT_ID } from '../../domain/artifactIds';
import { isolatedHome } from '../helpers/env';

describe('ArtifactStore', () => {
  const store = new ArtifactStore(path.join(isolatedHome('artifacts'), 'artifacts'));

  it('stores by content hash and reads back', async () => {
    const ref = await store.put('hello');
    expect(ref).toEqual({
      id: 'sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824',
      bytes: 5,
    });
    expect(await store.getText(ref.id)).toBe('hello');
    expect(await store.put('hello')).toEqual(ref);
    expect(await store.getJson((await store.putJson({ a: [1, 2] })).id)).toEqual({ a: [1, 2] });
    expect((await store.put('')).id).toBe(EMPTY_CONTENT_ID); // what workflow code knows without asking
  });

  it('leaves no temporary files behind', async () => {
    await Promise.all(Array.from({ length: 20 }, (_, i) => store.put(`item ${i % 5}`)));
    const files = fs.readdirSync(store.root, { recursive: true }).map(String);
    expect(files.filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('detects corruption on read and names the artifact', async () => {
    const ref = await store.put('precious');
    fs.writeFileSync(store.pathOf(ref.id), 'tampered');
    await expect(store.get(ref.id)).rejects.toBeInstanceOf(ArtifactIntegrityError);
    await expect(store.get(ref.id)).rejects.toThrow(ref.id);
  });

  it('rejects ids that are not content hashes and reports missing ones', async () => {
    expect(() => store.pathOf('../../etc/passwd')).toThrow(/not an artifact id/);
    await expect(store.get(`sha256:${'0'.repeat(64)}`)).rejects.toThrow(/not found/);
  });
});
