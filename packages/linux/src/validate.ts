import { InvalidArgumentError } from '@flannel/core'
import type { VxlanLinkSpec } from './types.js'

/** Checks a VXLAN spec before anything is sent; throws InvalidArgumentError naming the field. */
export function validateVxlanSpec(spec: VxlanLinkSpec): void {
  if (spec.name.length === 0 || spec.name.length > 15) {
    throw new InvalidArgumentError('link name', spec.name, 'must be 1 to 15 characters')
  }
  if (!Number.isInteger(spec.vni) || spec.vni < 0 || spec.vni > 0xffffff) {
    throw new InvalidArgumentError('vni', spec.vni, 'must be an integer from 0 to 16777215')
  }
  if (
    spec.port !== undefined &&
    (!Number.isInteger(spec.port) || spec.port < 0 || spec.port > 65535)
  ) {
    throw new InvalidArgumentError('port', spec.port, 'must be an integer from 0 to 65535')
  }
}
