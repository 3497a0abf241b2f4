/**
 * Runs `fn` over `items` with at most `limit` in flight, keeping results in input order: a bounded
 * sliding window (Temporal caps pending children/activities per workflow at 2,000 by default).
 * Deterministic: uses only promises, so it is safe in workflow code.
 */
export async function mapWithConcurrency<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index]!, index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return results;
}
