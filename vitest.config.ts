import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Temporal's native core bridge does not like worker threads: run each file in a forked process.
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2 } },
    testTimeout: 120_000,
    hookTimeout: 180_000,
    include: ['test/**/*.test.ts'],
  },
});
