import { accessSync, constants as fsConstants } from 'node:fs'

/** The etcd binary the launcher runs: `$ETCD_BIN`, else Debian's `/usr/bin/etcd`. */
export function etcdBinary(): string {
  const fromEnv = process.env.ETCD_BIN
  return fromEnv !== undefined && fromEnv !== '' ? fromEnv : '/usr/bin/etcd'
}

/** The etcdctl binary: `$ETCDCTL_BIN`, else `/usr/bin/etcdctl`. */
export function etcdctlBinary(): string {
  const fromEnv = process.env.ETCDCTL_BIN
  return fromEnv !== undefined && fromEnv !== '' ? fromEnv : '/usr/bin/etcdctl'
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, fsConstants.X_OK)
    return true
  } catch {
    return false
  }
}

/**
 * Why etcd-backed tests cannot run here, or undefined when they can.
 * Install the binary with `apt-get install etcd-server` (scripts/setup.sh does).
 */
export function etcdMissingReason(): string | undefined {
  const bin = etcdBinary()
  if (!isExecutable(bin)) {
    return `no etcd binary at ${bin} (install Debian's etcd-server or set ETCD_BIN)`
  }
  return undefined
}

/** True when an etcd binary is available (see {@link etcdMissingReason} for why not). */
export function etcdAvailable(): boolean {
  return etcdMissingReason() === undefined
}

/** Why etcdctl-based helpers cannot run here, or undefined when they can. */
export function etcdctlMissingReason(): string | undefined {
  const bin = etcdctlBinary()
  if (!isExecutable(bin)) {
    return `no etcdctl binary at ${bin} (install Debian's etcd-client or set ETCDCTL_BIN)`
  }
  return undefined
}
