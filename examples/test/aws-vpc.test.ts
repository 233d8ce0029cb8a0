import { describe, expect, it } from 'vitest'
import { runExample } from './run-example.js'
import { motoUnavailableReason } from '@flannel/testkit/aws'

const reason = motoUnavailableReason()
if (reason !== undefined) console.warn(`aws-vpc example test skipped: ${reason}`)

describe('examples/aws-vpc.ts', () => {
  it.skipIf(reason !== undefined)(
    `registers the lease route in moto's VPC route table${reason ? ` [skipped: ${reason}]` : ''}`,
    async () => {
      const { stdout } = await runExample('aws-vpc.ts', {
        env: {
          ...process.env,
          AWS_REAL: '',
          AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
        },
      })
      expect(stdout).toContain('lease 10.5.34.0/24, MTU 9001')
      expect(stdout).toMatch(/rtb-[0-9a-f]+: 10\.5\.34\.0\/24 -> eni-[0-9a-f]+/)
    },
  )
})
