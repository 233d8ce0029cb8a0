import { readdirSync, readFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { defineConfig, type TestProjectInlineConfiguration } from 'vitest/config'

const root = fileURLToPath(new URL('.', import.meta.url))

/**
 * The suite's four layers (DESIGN.md "Tests, in three layers", with interop
 * against real flanneld apart), each a vitest project so that
 * `vitest run --project unit` runs one of them:
 *
 * - interop: `interop-*.test.ts`, beside real flanneld (skipped without it);
 * - e2e: `*.e2e.test.ts` or under `test/e2e/`, whole agents on namespace hosts;
 * - integration: `*.integration.test.ts`, the examples' and the repository's
 *   own tests (they run programs), and any other test that starts a real part
 *   (etcd, kube-apiserver, cloud emulators, namespaces, processes, servers);
 * - unit: the rest, pure logic against in-memory fakes, no root needed.
 *
 * The last rule reads what a test file imports, so a new test that starts etcd
 * lands in the integration layer without a list to keep.
 */
type Layer = 'unit' | 'integration' | 'e2e' | 'interop'

const STARTS_REAL_PARTS =
  /from '(?:@flannel\/testkit\/(?:etcd|kube|netns|aws|ali|gce|http|proc|flanneld)|\.\.\/src\/(?:netns|proc|kube|etcd)[^']*|node:(?:child_process|net|http))'/

function layerOf(file: string): Layer {
  const name = basename(file)
  if (name.startsWith('interop-')) return 'interop'
  if (name.endsWith('.e2e.test.ts') || file.includes('/e2e/')) return 'e2e'
  if (name.endsWith('.integration.test.ts') || !file.startsWith('packages/')) return 'integration'
  return STARTS_REAL_PARTS.test(readFileSync(join(root, file), 'utf8')) ? 'integration' : 'unit'
}

function testFiles(): string[] {
  const found: string[] = []
  const walk = (dir: string): void => {
    for (const entry of readdirSync(join(root, dir), { withFileTypes: true })) {
      const path = `${dir}/${entry.name}`
      if (entry.isDirectory()) {
        if (entry.name !== 'node_modules' && entry.name !== 'dist') walk(path)
      } else if (entry.name.endsWith('.test.ts')) found.push(path)
    }
  }
  for (const pkg of readdirSync(join(root, 'packages'))) {
    try {
      walk(`packages/${pkg}/test`)
    } catch {
      // a package without tests
    }
  }
  walk('examples/test')
  walk('test')
  return found.sort()
}

const byLayer = new Map<Layer, string[]>()
for (const file of testFiles()) {
  const layer = layerOf(file)
  byLayer.set(layer, [...(byLayer.get(layer) ?? []), file])
}

const project = (name: Layer): TestProjectInlineConfiguration => ({
  extends: true,
  test: { name, include: byLayer.get(name) ?? [] },
})

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
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    maxWorkers: 2,
    reporters: ['default'],
    projects: [project('unit'), project('integration'), project('e2e'), project('interop')],
  },
})
