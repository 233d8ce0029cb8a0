import { defineConfig } from 'tsup'

export default defineConfig({
  entry: { index: 'src/index.ts', backend: 'src/backend/index.ts', memory: 'src/memory/index.ts' },
  format: ['esm', 'cjs'],
  dts: true,
  clean: true,
  sourcemap: true,
  target: 'node20',
})
