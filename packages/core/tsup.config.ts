import { defineConfig } from 'tsup'

export default defineConfig({
  entry: { index: 'src/index.ts', registry: 'src/registry/index.ts' },
  format: ['esm', 'cjs'],
  dts: true,
  clean: true,
  sourcemap: true,
  target: 'node20',
})
