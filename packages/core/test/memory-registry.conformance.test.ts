import { MemoryRegistry } from '@flannel/core'
import { describeRegistryConformance } from '@flannel/testkit/conformance'

describeRegistryConformance('MemoryRegistry (fake clock)', async (config) => {
  let now = Date.now() // a fake clock starting at the real time, moved only by advance()
  const registry = new MemoryRegistry(config, { clock: () => now })
  return {
    registry,
    advance: (ms) => {
      now += ms
      registry.checkExpiry()
    },
    close: () => registry.close(),
  }
})

describeRegistryConformance('MemoryRegistry (system clock, no advance)', async (config) => {
  const registry = new MemoryRegistry(config)
  return { registry, close: () => registry.close() }
})
