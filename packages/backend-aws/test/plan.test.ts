import { describe, expect, it } from 'vitest'
import { ConfigError, Ip4Net, parseNetworkConfig } from '@flannel/core'
import { AwsVpcBackend } from '@flannel/backend-aws'
import { credentialsFromEnv } from '../src/backend.js'
import { blackholesInside, inside, planOwnRoute, staleRoutes } from '../src/plan.js'

const network = Ip4Net.parse('10.5.0.0/16')
const own = Ip4Net.parse('10.5.34.0/24')

describe('planOwnRoute', () => {
  it('keeps a right route, creates a missing one, replaces a wrong or blackholed one', () => {
    const right = {
      DestinationCidrBlock: '10.5.34.0/24',
      NetworkInterfaceId: 'eni-1',
      State: 'active',
    }
    expect(planOwnRoute([right], own, 'eni-1')).toEqual({ kind: 'keep' })
    expect(planOwnRoute([], own, 'eni-1')).toEqual({ kind: 'create' })
    const wrong = { ...right, NetworkInterfaceId: 'eni-2' }
    expect(planOwnRoute([wrong], own, 'eni-1')).toEqual({ kind: 'replace', previous: wrong })
    const dead = { ...right, State: 'blackhole' }
    expect(planOwnRoute([dead], own, 'eni-1')).toEqual({ kind: 'replace', previous: dead })
  })
})

describe('route selection', () => {
  const routes = [
    {
      DestinationCidrBlock: '10.5.1.0/24',
      NetworkInterfaceId: 'eni-9',
      State: 'blackhole',
      Origin: 'CreateRoute',
    },
    {
      DestinationCidrBlock: '10.0.0.0/8',
      NetworkInterfaceId: 'eni-9',
      State: 'blackhole',
      Origin: 'CreateRoute',
    },
    {
      DestinationCidrBlock: '10.5.2.0/24',
      InstanceId: 'i-1',
      State: 'active',
      Origin: 'CreateRoute',
    },
    {
      DestinationCidrBlock: '10.5.3.0/24',
      GatewayId: 'igw-1',
      State: 'active',
      Origin: 'CreateRoute',
    },
    {
      DestinationCidrBlock: '10.5.4.0/24',
      NetworkInterfaceId: 'eni-2',
      State: 'active',
      Origin: 'EnableVgwRoutePropagation',
    },
    {
      DestinationCidrBlock: '172.16.0.0/16',
      NetworkInterfaceId: 'eni-2',
      State: 'active',
      Origin: 'CreateRoute',
    },
  ]
  it('finds blackholes only inside Network (never its supernets)', () => {
    expect(blackholesInside(routes, network)).toEqual(['10.5.1.0/24'])
    expect(inside('10.0.0.0/8', network)).toBe(false)
    expect(inside('10.5.0.0/16', network)).toBe(true)
  })
  it('finds stale instance/ENI routes inside Network without a live lease', () => {
    const live = new Set(['10.5.1.0/24'])
    expect(staleRoutes(routes, network, live).map((r) => r.DestinationCidrBlock)).toEqual([
      '10.5.2.0/24',
    ])
    expect(
      staleRoutes(routes, network, new Set(), new Set(['10.5.1.0/24'])).map(
        (r) => r.DestinationCidrBlock,
      ),
    ).toEqual(['10.5.1.0/24'])
  })
})

describe('credentials', () => {
  it('maps the legacy AWS_SECURITY_TOKEN to the session token', () => {
    expect(
      credentialsFromEnv({
        AWS_ACCESS_KEY_ID: 'a',
        AWS_SECRET_ACCESS_KEY: 's',
        AWS_SECURITY_TOKEN: 't',
      }),
    ).toEqual({
      accessKeyId: 'a',
      secretAccessKey: 's',
      sessionToken: 't',
    })
    expect(
      credentialsFromEnv({
        AWS_ACCESS_KEY_ID: 'a',
        AWS_SECRET_ACCESS_KEY: 's',
        AWS_SESSION_TOKEN: 'n',
        AWS_SECURITY_TOKEN: 't',
      }),
    ).toEqual({ accessKeyId: 'a', secretAccessKey: 's', sessionToken: 'n' })
    expect(credentialsFromEnv({})).toBeUndefined()
  })
})

describe('RouteTableID option', () => {
  const backend = new AwsVpcBackend(
    {
      registry: {} as never,
      extIface: { name: 'eth0', index: 2, mtu: 1500, ifaceAddr: '198.51.100.10' },
    },
    { metadataEndpoint: 'http://127.0.0.1:9' },
  )
  const reject = async (value: unknown): Promise<ConfigError> => {
    const config = parseNetworkConfig({
      Network: '10.5.0.0/16',
      Backend: { Type: 'aws-vpc', RouteTableID: value },
    })
    try {
      await backend.registerNetwork(config)
    } catch (err) {
      return err as ConfigError
    }
    throw new Error('expected a rejection')
  }
  it("rejects other types with flanneld's messages", async () => {
    const e1 = await reject(42)
    expect(e1).toBeInstanceOf(ConfigError)
    expect(e1.message).toBe('Unexpected RouteTableID type. Must be string or array of strings.')
    expect(e1).toMatchObject({ field: 'Backend.RouteTableID', value: 42 })
    const e2 = await reject(['rtb-1', 7])
    expect(e2.message).toBe('Unexpected type in RouteTableID slice. Must be strings.')
  })
})
