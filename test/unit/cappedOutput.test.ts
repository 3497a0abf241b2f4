import { describe, expect, it } from 'vitest';
import { CappedOutput } from '../../domain/cappedOutput';

describe('CappedOutput', () => {
  it('keeps short output whole', () => {
    const out = new CappedOutput(100);
    out.push(Buffer.from('hello '));
    out.push(Buffer.from('world'));
    expect(out.text()).toBe('hello world');
    expect(out.cutBytes).toBe(0);
  });

  it('keeps head and tail of long output and says how much was cut', () => {
    const out = new CappedOutput(20);
    for (let i = 0; i < 1000; i++) out.push(Buffer.from(`${i % 10}`.repeat(7)));
    expect(out.totalBytes).toBe(7000);
    expect(out.cutBytes).toBe(6980);
    const text = out.text();
    expect(text.startsWith('0000000111')).toBe(true);
    expect(text.endsWith('8889999999')).toBe(true);
    expect(text).toContain('[... 6980 bytes of output cut; 7000 bytes in all ...]');
  });

  it('bounds memory for huge streams', () => {
    const out = new CappedOutput(1024);
    const chunk = Buffer.alloc(64 * 1024, 'x');
    for (let i = 0; i < 200; i++) out.push(chunk);
    expect(out.text().length).toBeLessThan(1200);
  });
});
