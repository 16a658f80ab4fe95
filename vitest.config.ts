import { defineConfig } from 'vitest/config'

// the tests that start server clusters (nats-server ×3, PostgreSQL, Redis, several vitalmesh
// processes): run one at a time after the rest, so that none of them shares the two cores with
// another cluster. Side by side, a JetStream cluster forming under the other's load could not
// place a 3-replica stream within 30 s (CI run 10 of 2026-12-02)
const CLUSTER = ['cluster/test/**/*.test.ts', 'test/cluster*.test.ts']

export default defineConfig({
  test: {
    exclude: ['node_modules/**', 'data/**'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    projects: [
      {
        extends: true,
        // real servers and child processes: two cores, so keep parallelism modest
        test: { name: 'main', include: ['**/test/**/*.test.ts'], exclude: ['node_modules/**', 'data/**', ...CLUSTER], maxWorkers: 2 },
      },
      {
        extends: true,
        // hooks get 3 minutes: starting a server cluster may take a second try (test/helpers/nats.ts)
        test: { name: 'cluster', include: CLUSTER, fileParallelism: false, sequence: { groupOrder: 1 }, hookTimeout: 180_000 },
      },
    ],
  },
})
