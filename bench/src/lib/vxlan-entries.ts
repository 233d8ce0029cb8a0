/** Counting a vxlan device's per-peer entries in a namespace's kernel (convergence benches). */
import { nsExec } from '@flannel/testkit/netns'

/** How many peers a vxlan device has each entry for. */
export interface VxlanEntryCounts {
  /** Routes through the device with a gateway (`<subnet> via <addr> onlink`). */
  readonly routes: number
  /** Permanent neighbour entries. */
  readonly neigh: number
  /** FDB entries with a remote (`<mac> dst <public ip>`). */
  readonly fdb: number
}

/**
 * The entries on `dev` (default `flannel.1`) in namespace `ns`, read with
 * `ip` and `bridge`. Works for flanneld's routes (no protocol) and ours
 * (`proto 70`) alike.
 */
export async function vxlanEntryCounts(ns: string, dev = 'flannel.1'): Promise<VxlanEntryCounts> {
  const lines = async (cmd: string, args: string[], has: string) =>
    (await nsExec(ns, cmd, args)).split('\n').filter((l) => l.includes(has)).length
  const [routes, neigh, fdb] = await Promise.all([
    lines('ip', ['route', 'show', 'dev', dev], ' via '),
    lines('ip', ['neigh', 'show', 'dev', dev, 'nud', 'permanent'], ' lladdr '),
    lines('bridge', ['fdb', 'show', 'dev', dev], ' dst '),
  ])
  return { routes, neigh, fdb }
}
