import { rmSync } from 'node:fs'
import { createConnection, createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import { spawnProcess, type ManagedProcess } from '../proc/index.js'

/**
 * The half that runs inside the namespace (`node -e`): a unix socket that
 * forwards each connection to `host:port`. A path-bound unix socket is
 * reachable from every network namespace, so nothing is added to the host's
 * own network.
 */
const NETNS_HALF = `
const net = require('node:net')
const [socketPath, host, port] = process.argv.slice(1)
const server = net.createServer((client) => {
  const upstream = net.connect({ host, port: Number(port) })
  client.pipe(upstream).pipe(client)
  const drop = () => { client.destroy(); upstream.destroy() }
  client.on('error', drop); upstream.on('error', drop)
  client.on('close', drop); upstream.on('close', drop)
})
server.listen(socketPath, () => process.stdout.write('relay listening\\n'))
process.on('SIGTERM', () => process.exit(0))
`

/** A TCP port on host loopback that reaches `host:port` inside a namespace. */
export interface NetnsRelay {
  /** The loopback port in this process's namespace. */
  readonly port: number
  /** The relay process inside the namespace. */
  readonly process: ManagedProcess
  /** Closes the listener and every relayed connection, and stops the namespace half. */
  close(): Promise<void>
}

/**
 * Makes `host:port` inside network namespace `netns` reachable from this
 * process on `127.0.0.1:<port>`: a loopback listener here, a unix socket in
 * `dir`, and a small relay process inside the namespace. TLS passes through
 * untouched, so the server's certificate must also name `127.0.0.1`.
 */
export async function startNetnsRelay(
  netns: string,
  host: string,
  port: number,
  dir: string,
): Promise<NetnsRelay> {
  const socketPath = join(dir, 'relay.sock')
  rmSync(socketPath, { force: true })
  const relay = spawnProcess('ip', [
    'netns',
    'exec',
    netns,
    process.execPath,
    '-e',
    NETNS_HALF,
    socketPath,
    host,
    String(port),
  ])
  const sockets = new Set<Socket>()
  let server: Server | undefined
  try {
    await relay.waitFor(/relay listening/, 20_000)
    const listening = createServer((client) => {
      const upstream = createConnection({ path: socketPath })
      sockets.add(client).add(upstream)
      client.pipe(upstream).pipe(client)
      const drop = (): void => {
        client.destroy()
        upstream.destroy()
        sockets.delete(client)
        sockets.delete(upstream)
      }
      client.on('error', drop).on('close', drop)
      upstream.on('error', drop).on('close', drop)
    })
    server = listening
    await new Promise<void>((resolve, reject) => {
      listening.once('error', reject)
      listening.listen(0, '127.0.0.1', () => resolve())
    })
  } catch (err) {
    server?.close()
    await relay.stop('SIGKILL')
    throw err
  }
  const address = server.address()
  const localPort = typeof address === 'object' && address !== null ? address.port : 0
  const listener = server
  return {
    port: localPort,
    process: relay,
    async close() {
      for (const s of sockets) s.destroy()
      sockets.clear()
      await new Promise<void>((resolve) => listener.close(() => resolve()))
      await relay.stop('SIGTERM', 2000)
      rmSync(socketPath, { force: true })
    },
  }
}
