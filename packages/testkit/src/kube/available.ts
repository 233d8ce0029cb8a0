import { accessSync, constants as fsConstants } from 'node:fs'
import { homedir } from 'node:os'
import { delimiter, join } from 'node:path'
import { etcdMissingReason } from '../etcd/available.js'

/** The kube-apiserver version the kube tests run against (flannel v0.28.10 uses client-go v0.37.1). */
export const KUBE_APISERVER_VERSION = 'v1.37.2'

function isExecutable(path: string): boolean {
  try {
    accessSync(path, fsConstants.X_OK)
    return true
  } catch {
    return false
  }
}

function nonEmpty(value: string | undefined): string | undefined {
  return value !== undefined && value !== '' ? value : undefined
}

/**
 * The cache directory `scripts/build-kube-apiserver.sh` builds into:
 * `$FLANNEL_TS_CACHE`, else `$XDG_CACHE_HOME/flannel-ts`, else
 * `~/.cache/flannel-ts` (the same rule as the script).
 */
export function flannelCacheDir(): string {
  return (
    nonEmpty(process.env.FLANNEL_TS_CACHE) ??
    join(nonEmpty(process.env.XDG_CACHE_HOME) ?? join(homedir(), '.cache'), 'flannel-ts')
  )
}

/** Where the build script puts kube-apiserver {@link KUBE_APISERVER_VERSION}. */
export function cachedKubeApiserverPath(): string {
  return join(flannelCacheDir(), `kube-apiserver-${KUBE_APISERVER_VERSION}`, 'kube-apiserver')
}

/**
 * The kube-apiserver binary to run: `$KUBE_APISERVER_BIN` when set, else the
 * cached build ({@link cachedKubeApiserverPath}); undefined when there is none.
 */
export function findKubeApiserver(): string | undefined {
  const fromEnv = nonEmpty(process.env.KUBE_APISERVER_BIN)
  if (fromEnv !== undefined) return isExecutable(fromEnv) ? fromEnv : undefined
  const cached = cachedKubeApiserverPath()
  return isExecutable(cached) ? cached : undefined
}

function onPath(command: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir !== '' && isExecutable(join(dir, command))) return join(dir, command)
  }
  return undefined
}

/** A Go toolchain the build script would use (`go` on PATH, else `/usr/local/go/bin/go`). */
function findGo(): string | undefined {
  return onPath('go') ?? (isExecutable('/usr/local/go/bin/go') ? '/usr/local/go/bin/go' : undefined)
}

/**
 * Why tests against a real kube-apiserver cannot run here, or undefined when
 * they can: no kube-apiserver binary (built by `scripts/setup.sh`, which
 * needs Go), no etcd, or no `openssl` for the certificates.
 *
 * @example
 * ```ts
 * const skip = kubeSkipReason()
 * describe.skipIf(skip)(`kube tests${skip ? ` (skipped: ${skip})` : ''}`, () => { ... })
 * ```
 */
export function kubeSkipReason(): string | undefined {
  const fromEnv = nonEmpty(process.env.KUBE_APISERVER_BIN)
  if (fromEnv !== undefined && !isExecutable(fromEnv)) {
    return `KUBE_APISERVER_BIN=${fromEnv} is not an executable file`
  }
  if (findKubeApiserver() === undefined) {
    const where = cachedKubeApiserverPath()
    if (findGo() === undefined) {
      return (
        `no kube-apiserver ${KUBE_APISERVER_VERSION} at ${where}, and no Go toolchain to build it ` +
        '(looked on PATH and in /usr/local/go/bin): install Go >= 1.26 and run scripts/setup.sh, ' +
        'or set KUBE_APISERVER_BIN'
      )
    }
    return (
      `no kube-apiserver ${KUBE_APISERVER_VERSION} at ${where}: run scripts/setup.sh ` +
      '(or scripts/build-kube-apiserver.sh; the first build takes minutes), or set KUBE_APISERVER_BIN'
    )
  }
  const etcd = etcdMissingReason()
  if (etcd !== undefined) return etcd
  if (onPath('openssl') === undefined) return 'no openssl command for the test certificates'
  return undefined
}
