import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ArtifactIntegrityError, ArtifactStore } from '../../activities/artifacts';
import { canonicalJson, recorded } from '../../activities/recordedWork';
import { isolatedHome } from '../helpers/env';

describe('recorded work', () => {
  const store = new ArtifactStore(path.join(isolatedHome('recorded'), 'artifacts'));

  it('does a unit of work once and returns its recorded result to later attempts', async () => {
    let runs = 0;
    let reused = 0;
    const work = async () => {
      runs++;
      return { resolved: true, run: runs };
    };
    const key = { work: 'grading', workflowId: 'w1', patch: { kind: 'gold' } };
    expect(await recorded(store, key, work, { onReuse: () => reused++ })).toEqual({ resolved: true, run: 1 });
    // A later attempt (another process, the same store) with the same identity, keys in another order.
    const again = new ArtifactStore(store.root);
    expect(
      await recorded(again, { patch: { kind: 'gold' }, workflowId: 'w1', work: 'grading' }, work),
    ).toEqual({
      resolved: true,
      run: 1,
    });
    expect(await recorded(store, key, work, { onReuse: () => reused++ })).toEqual({ resolved: true, run: 1 });
    expect([runs, reused]).toEqual([1, 1]);
    // Another identity is other work.
    expect(await recorded(store, { ...key, workflowId: 'w2' }, work)).toEqual({ resolved: true, run: 2 });
  });

  it('does not record a failure: the next attempt does the work', async () => {
    const key = { work: 'grading', workflowId: 'failing' };
    await expect(
      recorded(store, key, async () => {
        throw new Error('sandbox lost');
      }),
    ).rejects.toThrow('sandbox lost');
    expect(await recorded(store, key, async () => 'done')).toBe('done');
  });

  it('does not record the result of an attempt cancelled while it worked', async () => {
    const key = { work: 'grading', workflowId: 'cancelled' };
    const cancelled = new AbortController();
    const cut = await recorded(
      store,
      key,
      async () => {
        cancelled.abort(); // e.g. the SDK timed the attempt out and its test run was killed
        return 'cut short';
      },
      { signal: cancelled.signal },
    );
    expect(cut).toBe('cut short');
    expect(await recorded(store, key, async () => 'whole', { signal: new AbortController().signal })).toBe(
      'whole',
    );
    expect(await recorded(store, key, async () => 'again')).toBe('whole');
  });

  it('keeps records beside the artifacts, written whole, and refuses a tampered one', async () => {
    const key = canonicalJson({ work: 'grading', workflowId: 'w3' });
    await store.putRecord(key, { a: 1 });
    expect(await store.getRecord(key)).toEqual({ value: { a: 1 } });
    expect(await store.getRecord(canonicalJson({ work: 'grading', workflowId: 'none' }))).toBeUndefined();
    const file = store.recordPathOf(key);
    expect(file.startsWith(path.join(store.root, 'records'))).toBe(true);
    const files = fs.readdirSync(store.root, { recursive: true }).map(String);
    expect(files.filter((f) => f.includes('.tmp-'))).toEqual([]);
    fs.writeFileSync(file, '{"key": "something else", "value": 2}');
    await expect(store.getRecord(key)).rejects.toBeInstanceOf(ArtifactIntegrityError);
  });

  it('spells one key one way', () => {
    expect(canonicalJson({ b: 1, a: { d: [2, { f: 1, e: 0 }], c: null } })).toBe(
      '{"a":{"c":null,"d":[2,{"e":0,"f":1}]},"b":1}',
    );
  });
});
