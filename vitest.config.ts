import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

const root = fileURLToPath(new URL('.', import.meta.url))

// Tests run against the packages' sources, so no build is needed between an
// edit and a test run. Each package is resolved through its own src/index.ts.
export default defineConfig({
  resolve: {
    alias: [
      {
        // Subpath modules of the testkit: @flannel/testkit/etcd -> src/etcd/index.ts
        find: /^@flannel\/([a-z0-9-]+)\/([a-z0-9-]+)$/,
        replacement: `${root}packages/$1/src/$2/index.ts`,
      },
      {
        find: /^@flannel\/([a-z0-9-]+)$/,
        replacement: `${root}packages/$1/src/index.ts`,
      },
    ],
  },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'examples/test/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    maxWorkers: 2,
    reporters: ['default'],
  },
})
