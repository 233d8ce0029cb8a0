/**
 * A custom kube-mode agent in ~40 lines: flanneld's `--kube-subnet-mgr`
 * registry (this host's lease is its Node's podCIDR; attributes go into the
 * Node's annotations) and the vxlan backend on the real kernel.
 *
 *   NODE_NAME=node-1 KUBECONFIG_FILE=./kubeconfig NET_CONF=./net-conf.json IFACE=eth0 \
 *     pnpm --filter @flannel/examples kube-agent
 *
 * net-conf.json as in kube-flannel.yml: {"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}.
 * Runs as root (it creates flannel.1). Without KUBECONFIG_FILE it uses the
 * pod's service account. Stop with Ctrl-C: annotations, device and routes stay.
 */
import { Agent } from '@flannel/core'
import { KubeRegistry } from '@flannel/registry-kube'
import { vxlan } from '@flannel/backend-vxlan'
import { NetlinkHostNetwork, selectExternalInterface } from '@flannel/linux'

const registry = new KubeRegistry({
  nodeName: process.env.NODE_NAME, // else POD_NAME/POD_NAMESPACE, as flanneld
  pod: { name: process.env.POD_NAME ?? '', namespace: process.env.POD_NAMESPACE ?? '' },
  kubeconfigPath: process.env.KUBECONFIG_FILE,
  netConfigPath: process.env.NET_CONF ?? '/etc/kube-flannel/net-conf.json',
})
const agent = new Agent({
  registry,
  backends: [vxlan()],
  // Once the Agent has read net-conf.json: flanneld's interface rules, with the
  // node-public-ip annotation (if any) as the published address.
  extIface: async ({ enableIPv4, enableIPv6 }) => {
    const pinned = await registry.getStoredPublicIP()
    return selectExternalInterface(new NetlinkHostNetwork(), {
      iface: process.env.IFACE ? [process.env.IFACE] : [],
      publicIP: pinned.publicIP ?? process.env.PUBLIC_IP,
      enableIPv4,
      enableIPv6,
    })
  },
  subnetFile: process.env.SUBNET_FILE ?? '/run/flannel/subnet.env',
})

const stop = new AbortController()
process.once('SIGINT', () => stop.abort())
process.once('SIGTERM', () => stop.abort())

agent.run({ signal: stop.signal }).subscribe({
  next: (event) => {
    if (event.type === 'ready') {
      console.log(`ready: podCIDR ${event.lease.subnet}, MTU ${event.mtu}`)
      // As flanneld: the Node's NetworkUnavailable condition goes to False.
      void registry.markNetworkAvailable({ signal: stop.signal }).then(
        () => console.log('NetworkUnavailable=False'),
        (error: unknown) => console.error(`CompleteLease execute error err: ${String(error)}`),
      )
    }
    if (event.type === 'peers') console.log(`peers: ${event.known}`)
  },
  error: (error: unknown) => {
    console.error(String(error))
    process.exitCode = 1
    void registry.close()
  },
  complete: () => void registry.close().then(() => console.log('stopped')),
})
