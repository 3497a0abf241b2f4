import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Temporal's native core bridge does not like worker threads: run each file in a forked process.
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2 } },
    // Generous on purpose: these limits only catch a hang. Real runs (pytest in sandboxes, the model, the
    // dev server) must never race them on a busy machine; tests that need a timeout use commands that hang.
    testTimeout: 600_000,
    hookTimeout: 600_000,
    include: ['test/**/*.test.ts'],
  },
});
