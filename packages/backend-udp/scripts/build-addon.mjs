#!/usr/bin/env node
// Builds the native part (build/Release/flannel_udp.node) with node-gyp from
// this package's own sources. Run at install time and by `pnpm run build:native`.
// Uses the installed Node's headers when they are present (no download).
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const pkgDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
if (process.platform !== 'linux') {
  console.warn(
    '[@flannel/backend-udp] not Linux: the native part is not built (the udp backend needs Linux)',
  )
  process.exit(0)
}

const args = ['rebuild']
const prefix = path.resolve(path.dirname(process.execPath), '..')
if (
  !process.env.npm_config_nodedir &&
  fs.existsSync(path.join(prefix, 'include/node/node_api.h'))
) {
  args.push(`--nodedir=${prefix}`)
}

function findNodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    path.join(prefix, 'lib/node_modules/pnpm/dist/node_modules/node-gyp/bin/node-gyp.js'),
    path.join(prefix, 'lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js'),
  ]
  for (const c of candidates) if (c && fs.existsSync(c)) return [process.execPath, c]
  return ['node-gyp']
}

const [cmd, ...pre] = findNodeGyp()
const r = spawnSync(cmd, [...pre, ...args], { cwd: pkgDir, stdio: 'inherit' })
if (r.status !== 0) {
  console.error(
    '[@flannel/backend-udp] building the native addon failed. It needs python3, make, a C compiler ' +
      'and the Node headers (node-gyp downloads them when they are not installed). ' +
      'Fix that, then run: pnpm --filter @flannel/backend-udp run build:native',
  )
  process.exit(r.status ?? 1)
}
