import type { EC2Client } from '@aws-sdk/client-ec2'
import { describe, expect, it } from 'vitest'
import { Ec2Api } from '../src/ec2.js'

// A stand-in client for the pure paging logic (moto never splits these answers into pages).
function pagedClient(pages: { RouteTables: { RouteTableId: string }[]; NextToken?: string }[]) {
  const inputs: Record<string, unknown>[] = []
  const client = {
    send: async (command: { input: Record<string, unknown> }) => {
      inputs.push(command.input)
      const i = command.input.NextToken === undefined ? 0 : Number(command.input.NextToken)
      return pages[i]
    },
    destroy: () => {},
  }
  return { client: client as unknown as EC2Client, inputs }
}

describe('Ec2Api paging', () => {
  it('reads DescribeRouteTables to the last page, passing each NextToken', async () => {
    const { client, inputs } = pagedClient([
      { RouteTables: [{ RouteTableId: 'rtb-1' }], NextToken: '1' },
      { RouteTables: [{ RouteTableId: 'rtb-2' }], NextToken: '2' },
      { RouteTables: [{ RouteTableId: 'rtb-3' }] },
    ])
    const api = new Ec2Api({ region: 'us-east-1', maxAttempts: 1, client })
    const tables = await api.describeRouteTables({
      filters: [{ Name: 'vpc-id', Values: ['vpc-1'] }],
    })
    expect(tables.map((t) => t.RouteTableId)).toEqual(['rtb-1', 'rtb-2', 'rtb-3'])
    expect(inputs.map((i) => [i.NextToken, i.MaxResults])).toEqual([
      [undefined, 100],
      ['1', 100],
      ['2', 100],
    ])
  })

  it('does not send MaxResults together with explicit ids', async () => {
    const { client, inputs } = pagedClient([{ RouteTables: [{ RouteTableId: 'rtb-1' }] }])
    await new Ec2Api({ region: 'us-east-1', maxAttempts: 1, client }).describeRouteTables({
      ids: ['rtb-1'],
    })
    expect(inputs[0]).toEqual({ RouteTableIds: ['rtb-1'], NextToken: undefined })
  })
})
