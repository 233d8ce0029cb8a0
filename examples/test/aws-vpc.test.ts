import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { motoUnavailableReason } from '@flannel/testkit/aws'

const run = promisify(execFile)
const reason = motoUnavailableReason()
if (reason !== undefined) console.warn(`aws-vpc example test skipped: ${reason}`)

describe('examples/aws-vpc.ts', () => {
  it.skipIf(reason !== undefined)(
    `registers the lease route in moto's VPC route table${reason ? ` [skipped: ${reason}]` : ''}`,
    async () => {
      const { stdout } = await run(
        process.execPath,
        ['--conditions=@flannel/source', '--import', 'tsx', 'aws-vpc.ts'],
        {
          cwd: fileURLToPath(new URL('..', import.meta.url)),
          env: {
            ...process.env,
            AWS_REAL: '',
            AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
          },
        },
      )
      expect(stdout).toContain('lease 10.5.34.0/24, MTU 9001')
      expect(stdout).toMatch(/rtb-[0-9a-f]+: 10\.5\.34\.0\/24 -> eni-[0-9a-f]+/)
    },
  )
})
