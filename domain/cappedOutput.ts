/**
 * Collects a stream's bytes up to a limit, keeping the head and the tail and noting how much of the
 * middle was cut, so that a command printing gigabytes costs a bounded amount of memory.
 */
export class CappedOutput {
  private readonly headLimit: number;
  private readonly tailLimit: number;
  private head: Buffer[] = [];
  private headBytes = 0;
  /** Tail chunks; trimmed from the front so that they hold at most `tailLimit` bytes plus one chunk. */
  private tail: Buffer[] = [];
  private tailBytes = 0;
  private total = 0;

  constructor(limitBytes: number) {
    this.headLimit = Math.ceil(limitBytes / 2);
    this.tailLimit = Math.floor(limitBytes / 2);
  }

  push(chunk: Buffer): void {
    this.total += chunk.length;
    if (this.headBytes < this.headLimit) {
      const take = Math.min(chunk.length, this.headLimit - this.headBytes);
      this.head.push(chunk.subarray(0, take));
      this.headBytes += take;
      chunk = chunk.subarray(take);
    }
    if (chunk.length === 0 || this.tailLimit === 0) return;
    this.tail.push(chunk);
    this.tailBytes += chunk.length;
    while (this.tail.length > 1 && this.tailBytes - this.tail[0]!.length >= this.tailLimit) {
      this.tailBytes -= this.tail.shift()!.length;
    }
  }

  get totalBytes(): number {
    return this.total;
  }

  get cutBytes(): number {
    return Math.max(0, this.total - this.headLimit - this.tailLimit);
  }

  text(): string {
    const head = Buffer.concat(this.head).toString('utf8');
    let tail = Buffer.concat(this.tail);
    if (tail.length > this.tailLimit) tail = tail.subarray(tail.length - this.tailLimit);
    const cut = this.cutBytes;
    if (cut === 0) return head + tail.toString('utf8');
    return `${head}\n[... ${cut} bytes of output cut; ${this.total} bytes in all ...]\n${tail.toString('utf8')}`;
  }
}
