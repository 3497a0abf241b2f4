import { describe, expect, it } from 'vitest';
import { recordEdit, takeLastEdit, undoHistorySchema } from '../../../domain/agent/undoHistory';

describe('undo history', () => {
  it('undoes edits of a path newest first, without touching the input', () => {
    const h0 = {};
    const h1 = recordEdit(h0, 'a.py', null);
    const h2 = recordEdit(h1, 'a.py', 'v1');
    expect(h0).toEqual({});
    expect(h2).toEqual({ 'a.py': [null, 'v1'] });
    const u1 = takeLastEdit(h2, 'a.py')!;
    expect(u1).toEqual({ previous: 'v1', history: { 'a.py': [null] } });
    const u2 = takeLastEdit(u1.history, 'a.py')!;
    expect(u2).toEqual({ previous: null, history: {} });
    expect(takeLastEdit(u2.history, 'a.py')).toBeNull();
  });

  it('keeps at most `depth` versions per path, dropping the oldest', () => {
    let h = {};
    for (const v of ['1', '2', '3', '4']) h = recordEdit(h, 'a', v, 3);
    expect(h).toEqual({ a: ['2', '3', '4'] });
  });

  it('is plain JSON that serialises the same whatever the order of edits', () => {
    const one = recordEdit(recordEdit({}, 'b', 'x'), 'a', 'y');
    const two = recordEdit(recordEdit({}, 'a', 'y'), 'b', 'x');
    expect(JSON.stringify(one)).toBe(JSON.stringify(two));
    const back = undoHistorySchema.parse(JSON.parse(JSON.stringify(recordEdit(one, '__proto__', null))));
    expect(takeLastEdit(back, '__proto__')).toEqual({ previous: null, history: one });
  });

  it('the schema refuses what is not a history', () => {
    expect(undoHistorySchema.safeParse({ a: [1] }).success).toBe(false);
    expect(undoHistorySchema.safeParse({ a: 'x' }).success).toBe(false);
  });
});
