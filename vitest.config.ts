import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['**/test/**/*.test.ts'],
    exclude: ['node_modules/**', 'data/**'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // real servers and child processes: two cores, so keep parallelism modest
    maxWorkers: 2,
  },
})
