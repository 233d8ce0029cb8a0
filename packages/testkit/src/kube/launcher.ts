import { randomBytes } from 'node:crypto'
import { rmSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import type { ClientRequest } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateTestCertificates } from '../etcd/certs.js'
import { freeLoopbackPort, startEtcd, type EtcdServer } from '../etcd/launcher.js'
import {
  execCommand,
  spawnProcess,
  spawnReaper,
  type ManagedProcess,
  type Reaper,
} from '../proc/index.js'
import { findKubeApiserver, kubeSkipReason } from './available.js'
import { startNetnsRelay, type NetnsRelay } from './relay.js'

/** Options of {@link startKubeApiserver}. */
export interface StartKubeApiserverOptions {
  /** Address the API server binds and advertises (default `127.0.0.1`). */
  readonly host?: string
  /**
   * Run etcd and the API server inside this network namespace (which must
   * exist, with `host` one of its addresses). The test process still reaches
   * the server through {@link KubeApiserver.localUrl}.
   */
  readonly netns?: string
  /** Secure port (default: a free one). */
  readonly port?: number
  /** `--service-cluster-ip-range` (default `10.0.0.0/24`). */
  readonly serviceClusterIpRange?: string
  /** More kube-apiserver flags (they come last, so they override the defaults). */
  readonly extraArgs?: readonly string[]
  /** How long to wait for `/readyz` after each launch (default 90 s; a busy machine is slow). */
  readonly startTimeoutMs?: number
}

/** One answer of {@link KubeApiserver.request}. */
export interface KubeResponse<T = unknown> {
  /** HTTP status code. */
  readonly status: number
  /** The body parsed as JSON (undefined when it is not JSON). */
  readonly body: T
  /** The raw body. */
  readonly text: string
}

/** Options of {@link KubeApiserver.request}. */
export interface KubeRequestOptions {
  /** Bearer token (default: the admin token). */
  readonly token?: string
  /**
   * Content type of the body. Default: `application/strategic-merge-patch+json`
   * for PATCH (as kubectl), else `application/json`. Server-side apply is
   * `application/apply-patch+yaml` (a YAML or JSON string body).
   */
  readonly contentType?: string
  /** Aborts the request. */
  readonly signal?: AbortSignal
}

/** One event of a watch stream. */
export interface WatchEvent<T = unknown> {
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR'
  readonly object: T
}

/** An open watch from {@link KubeApiserver.watch}; iterate it or take events one at a time. */
export interface KubeWatch<T = unknown> extends AsyncIterable<WatchEvent<T>> {
  /** Every event received so far, in order. */
  readonly events: readonly WatchEvent<T>[]
  /**
   * The next event not yet taken; rejects when the stream ends first or after
   * `timeoutMs` (default 30 s).
   */
  nextEvent(timeoutMs?: number): Promise<WatchEvent<T>>
  /** Ends the stream. */
  close(): void
}

/** The parts of a Node object the helpers fill in and tests read. */
export interface KubeNode {
  readonly apiVersion?: string
  readonly kind?: string
  readonly metadata: {
    readonly name: string
    readonly uid?: string
    readonly resourceVersion?: string
    readonly annotations?: Record<string, string>
    readonly labels?: Record<string, string>
  }
  readonly spec?: {
    readonly podCIDR?: string
    readonly podCIDRs?: readonly string[]
    readonly taints?: readonly { key: string; effect: string; value?: string }[]
  }
  readonly status?: {
    readonly conditions?: readonly {
      type: string
      status: string
      reason?: string
      message?: string
      lastTransitionTime?: string
      lastHeartbeatTime?: string
    }[]
  }
}

/** A manifest object: what {@link KubeApiserver.apply} needs to find its REST path. */
export interface KubeObject {
  readonly apiVersion: string
  readonly kind: string
  readonly metadata: { readonly name: string; readonly namespace?: string }
  /** Everything else (spec, data, ...) is sent as it is. */
  readonly [field: string]: unknown
}

/** Options of {@link KubeApiserver.apply}. */
export interface ApplyOptions {
  /** Validate and admit only (`dryRun=All`): nothing is stored. */
  readonly dryRun?: boolean
  /** Field manager (default `flannel-test`). */
  readonly fieldManager?: string
  /** Take over fields owned by other managers (`force=true`). */
  readonly force?: boolean
  /** Bearer token (default: the admin token). */
  readonly token?: string
}

/** Options of {@link KubeApiserver.writeKubeconfig}. */
export interface KubeconfigOptions {
  /** Bearer token of the user (default: the admin token). */
  readonly token?: string
  /** Server URL (default {@link KubeApiserver.localUrl}; use `url` for a process in the namespace). */
  readonly server?: string
  /** File name inside the server's directory (default `kubeconfig-<random>.json`). */
  readonly fileName?: string
  /** User name in the file (default `user`). */
  readonly userName?: string
}

/** A ServiceAccount token and a kubeconfig file for it. */
export interface ServiceAccountCredentials {
  /** The bound token from the TokenRequest API. */
  readonly token: string
  /** A kubeconfig file with that token (see {@link KubeconfigOptions.server}). */
  readonly kubeconfigPath: string
  /** `system:serviceaccount:<namespace>:<name>`. */
  readonly username: string
}

/** A kube-apiserver with its own etcd, started by {@link startKubeApiserver}. */
export interface KubeApiserver {
  /** Where the server listens, e.g. `https://127.0.0.1:43121` (an address in the namespace with `netns`). */
  readonly url: string
  /** The same server as reachable from this process (equal to `url` unless `netns` was given). */
  readonly localUrl: string
  /** The bind address. */
  readonly host: string
  /** The secure port. */
  readonly port: number
  /** The CA certificate that signed the serving certificate (PEM path and text). */
  readonly caFile: string
  readonly caPem: string
  /** Static token of user `admin` in group `system:masters`. */
  readonly token: string
  /** A kubeconfig file (JSON, which every kubeconfig loader reads) for `admin` at `localUrl`. */
  readonly kubeconfigPath: string
  /** The service-account signing key pair (`--service-account-signing-key-file`, `--service-account-key-file`). */
  readonly serviceAccountKeyFile: string
  readonly serviceAccountPublicKeyFile: string
  /** `--service-account-issuer`. */
  readonly serviceAccountIssuer: string
  /** Temp directory with every file; removed by {@link KubeApiserver.stop}. */
  readonly dir: string
  /** The private etcd (stopped with the server). */
  readonly etcd: EtcdServer
  /** Process id of the running kube-apiserver (of `ip netns exec` with `netns`). */
  readonly pid: number | undefined
  /** Sends one request to `localUrl` and returns status and body; never throws on an HTTP status. */
  request<T = unknown>(
    method: string,
    path: string,
    body?: unknown,
    options?: KubeRequestOptions,
  ): Promise<KubeResponse<T>>
  /**
   * Opens a watch on a list path: lists it, watches from the listing's
   * resourceVersion (so objects already there are not replayed as `ADDED`)
   * and resolves once the server has answered, so nothing after that is
   * missed. The ERROR events of a watch cache still catching up with etcd
   * (codes 504 and 429) are not delivered: the watch reopens from the last
   * resourceVersion, as client-go does. Any other ERROR (410 Gone) is.
   */
  watch<T = unknown>(
    path: string,
    options?: { readonly token?: string; readonly signal?: AbortSignal },
  ): Promise<KubeWatch<T>>
  /**
   * Creates a Node with `spec.podCIDR` = the first CIDR and `spec.podCIDRs` =
   * all (none: no podCIDR) and the given annotations; returns it as stored.
   */
  createNode(
    name: string,
    podCIDRs?: string | readonly string[],
    annotations?: Record<string, string>,
  ): Promise<KubeNode>
  /**
   * The REST path of a manifest object (`apiVersion`, `kind`, `metadata.name`
   * and, for namespaced kinds, `metadata.namespace`), found through the
   * server's discovery; rejects for a kind the server does not serve.
   */
  resourcePath(object: KubeObject): Promise<string>
  /**
   * Server-side apply of one manifest object (`PATCH` with
   * `application/apply-patch+yaml` and `fieldValidation=Strict`); with
   * `dryRun` it is validated and admitted but not stored. Returns the answer:
   * 201 created, 200 updated, else refused (a field the schema does not
   * declare gives 500 `field not declared in schema` in v1.37).
   */
  apply(object: KubeObject, options?: ApplyOptions): Promise<KubeResponse>
  /** Writes a kubeconfig file for a token and returns its path. */
  writeKubeconfig(options?: KubeconfigOptions): Promise<string>
  /**
   * A token for ServiceAccount `namespace/name` (which must exist) from the
   * TokenRequest API, and a kubeconfig file with it: how a test runs a
   * process under the RBAC rules a manifest grants.
   */
  serviceAccountKubeconfig(
    namespace: string,
    name: string,
    options?: {
      readonly server?: string
      readonly expirationSeconds?: number
    },
  ): Promise<ServiceAccountCredentials>
  /** Stops the API server (SIGTERM) and starts it again on the same port, with the same etcd data; waits for `/readyz`. */
  restart(): Promise<void>
  /** Stops the API server, its etcd and relay, and removes every file. Idempotent. */
  stop(): Promise<void>
  /** The last part of the API server's log, for failure messages. */
  log(): string
}

/** Every server not yet stopped: directories removed when the test process exits. */
const liveDirs = new Set<string>()
let exitHookInstalled = false

function installExitHook(): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  // The processes themselves are killed by the proc and etcd modules' own hooks.
  process.once('exit', () => {
    for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true })
  })
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

function randomHighPort(): number {
  return 20000 + Math.floor(Math.random() * 40000)
}

/** A kubeconfig document for one cluster, user and context. */
export function kubeconfigDocument(server: string, caPem: string, token: string, user = 'user') {
  return {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      {
        name: 'flannel-test',
        cluster: {
          server,
          'certificate-authority-data': Buffer.from(caPem).toString('base64'),
        },
      },
    ],
    users: [{ name: user, user: { token } }],
    contexts: [{ name: `${user}@flannel-test`, context: { cluster: 'flannel-test', user } }],
    'current-context': `${user}@flannel-test`,
  }
}

interface Endpoint {
  readonly host: string
  readonly port: number
  readonly ca: string
}

function send<T>(
  endpoint: Endpoint,
  token: string,
  method: string,
  path: string,
  body: unknown,
  options: KubeRequestOptions,
): Promise<KubeResponse<T>> {
  const payload =
    body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body)
  const contentType =
    options.contentType ??
    (method.toUpperCase() === 'PATCH'
      ? 'application/strategic-merge-patch+json'
      : 'application/json')
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: endpoint.host,
        port: endpoint.port,
        method,
        path,
        ca: endpoint.ca,
        agent: false,
        signal: options.signal,
        headers: {
          authorization: `Bearer ${options.token ?? token}`,
          accept: 'application/json',
          ...(payload === undefined
            ? {}
            : { 'content-type': contentType, 'content-length': Buffer.byteLength(payload) }),
        },
      },
      (res) => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => (text += chunk))
        res.on('error', reject)
        res.on('end', () => {
          let parsed: unknown
          try {
            parsed = text === '' ? undefined : JSON.parse(text)
          } catch {
            parsed = undefined
          }
          resolve({ status: res.statusCode ?? 0, body: parsed as T, text })
        })
      },
    )
    req.on('error', reject)
    req.end(payload)
  })
}

/**
 * ERROR events a watch cache sends while it has not caught up with etcd
 * (504 "Too large resource version", 429 "storage is (re)initializing"):
 * transient, and answered by reopening from the last resourceVersion, as
 * client-go's reflector does. They come after a start or restart of the
 * server, mostly on a busy machine.
 */
function isCacheLag(event: WatchEvent<unknown>): boolean {
  const status = event.object as { code?: number } | undefined
  return event.type === 'ERROR' && (status?.code === 504 || status?.code === 429)
}

/** The resourceVersion an event carries (object or status metadata). */
function eventResourceVersion(event: WatchEvent<unknown>): string | undefined {
  const rv = (event.object as { metadata?: { resourceVersion?: unknown } } | undefined)?.metadata
    ?.resourceVersion
  return typeof rv === 'string' && rv !== '' ? rv : undefined
}

async function openWatch<T>(
  endpoint: Endpoint,
  token: string,
  path: string,
  options: { readonly token?: string; readonly signal?: AbortSignal },
): Promise<KubeWatch<T>> {
  // The watch starts at a listing's resourceVersion, so a reopen resumes
  // exactly where the stream was and nothing is delivered twice.
  const listing = await send<{ metadata?: { resourceVersion?: string } }>(
    endpoint,
    token,
    'GET',
    path,
    undefined,
    options,
  )
  if (listing.status !== 200) {
    throw new Error(`watch ${path}: listing answered HTTP ${listing.status} ${listing.text}`)
  }
  let resourceVersion = listing.body?.metadata?.resourceVersion ?? ''
  const events: WatchEvent<T>[] = []
  let taken = 0
  let ended: Error | undefined
  let closed = false
  let current: ClientRequest | undefined
  const wakers = new Set<() => void>()
  const wake = (): void => {
    for (const w of [...wakers]) w()
  }
  const end = (err: Error): void => {
    ended ??= err
    wake()
  }

  /** One watch request from `resourceVersion`; resolves once the server answered 200. */
  const connect = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const sep = path.includes('?') ? '&' : '?'
      const fullPath = `${path}${sep}watch=1&resourceVersion=${encodeURIComponent(resourceVersion)}`
      let reopen = false
      const req = httpsRequest(
        {
          host: endpoint.host,
          port: endpoint.port,
          method: 'GET',
          path: fullPath,
          ca: endpoint.ca,
          agent: false,
          signal: options.signal,
          headers: {
            authorization: `Bearer ${options.token ?? token}`,
            accept: 'application/json',
          },
        },
        (res) => {
          if (res.statusCode !== 200) {
            let text = ''
            res.setEncoding('utf8')
            res.on('data', (chunk: string) => (text += chunk))
            res.on('end', () =>
              reject(new Error(`watch ${fullPath}: HTTP ${res.statusCode} ${text}`)),
            )
            return
          }
          let buffered = ''
          res.setEncoding('utf8')
          res.on('data', (chunk: string) => {
            buffered += chunk
            for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
              const line = buffered.slice(0, nl).trim()
              buffered = buffered.slice(nl + 1)
              if (line === '') continue
              const event = JSON.parse(line) as WatchEvent<T>
              if (isCacheLag(event)) {
                reopen = true
                continue
              }
              resourceVersion = eventResourceVersion(event) ?? resourceVersion
              events.push(event)
            }
            wake()
          })
          const finish = (why: string) => (): void => {
            if (current !== req || closed) return
            current = undefined
            if (!reopen) return end(new Error(`watch ${fullPath} ended: ${why}`))
            connect().catch((err: Error) => end(err))
          }
          res.on('end', finish('the server closed it'))
          res.on('error', (err) => finish(err.message)())
          res.on('close', finish('closed'))
          resolve()
        },
      )
      current = req
      req.on('error', (err) => {
        if (current === req) current = undefined
        end(err)
        reject(err)
      })
      req.end()
    })

  await connect()

  const nextEvent = (timeoutMs = 30_000): Promise<WatchEvent<T>> =>
    new Promise((resolveEvent, rejectEvent) => {
      const timer = setTimeout(() => {
        wakers.delete(check)
        rejectEvent(
          new Error(
            `no watch event on ${path} within ${timeoutMs} ms; seen: ${events.map((e) => e.type).join(', ')}`,
          ),
        )
      }, timeoutMs)
      const check = (): void => {
        const event = events[taken]
        if (event !== undefined) {
          taken++
        } else if (ended === undefined) return
        clearTimeout(timer)
        wakers.delete(check)
        if (event !== undefined) resolveEvent(event)
        else rejectEvent(ended)
      }
      wakers.add(check)
      check()
    })
  const close = (): void => {
    closed = true
    current?.destroy()
    current = undefined
    end(new Error(`watch ${path} closed`))
  }
  return {
    events,
    nextEvent,
    close,
    async *[Symbol.asyncIterator]() {
      try {
        for (;;) {
          try {
            yield await nextEvent(2 ** 31 - 1)
          } catch (err) {
            if (err === ended) return
            throw err
          }
        }
      } finally {
        close()
      }
    },
  }
}

/**
 * Starts a real kube-apiserver ({@link findKubeApiserver}) with a private
 * etcd on loopback (or inside `netns`): openssl-made CA and serving
 * certificate (for the address, `127.0.0.1` and `localhost`), a
 * service-account key pair, a static admin token and RBAC authorization, in a
 * fresh temp directory. Resolves once `/readyz` answers `ok`. Everything is
 * stopped and removed by `stop()` (also when start-up fails, and when the
 * test process exits or is killed).
 *
 * @example
 * ```ts
 * const skip = kubeSkipReason()
 * describe.skipIf(skip)(`kube${skip ? ` (skipped: ${skip})` : ''}`, () => {
 *   let api: KubeApiserver
 *   beforeAll(async () => (api = await startKubeApiserver()))
 *   afterAll(() => api?.stop())
 *   it('stores a node', async () => {
 *     await api.createNode('n1', '10.244.1.0/24')
 *     expect((await api.request('GET', '/api/v1/nodes/n1')).status).toBe(200)
 *   })
 * })
 * ```
 */
export async function startKubeApiserver(
  options: StartKubeApiserverOptions = {},
): Promise<KubeApiserver> {
  const missing = kubeSkipReason()
  if (missing !== undefined) throw new Error(missing)
  const binary = findKubeApiserver()!
  installExitHook()
  const host = options.host ?? '127.0.0.1'
  const startTimeoutMs = options.startTimeoutMs ?? 90_000
  const dir = await mkdtemp(join(tmpdir(), 'fl-kube-'))
  liveDirs.add(dir)

  let etcd: EtcdServer | undefined
  let relay: NetnsRelay | undefined
  let child: ManagedProcess | undefined
  let reaper: Reaper | undefined
  let port = options.port ?? 0
  let stopped = false

  const stopApiserver = async (): Promise<void> => {
    reaper?.cancel()
    reaper = undefined
    const proc = child
    if (proc !== undefined && proc.exitCode === undefined) await proc.stop('SIGTERM', 10_000)
  }

  const stop = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    await stopApiserver().catch(() => undefined)
    await relay?.close().catch(() => undefined)
    await etcd?.stop().catch(() => undefined)
    await rm(dir, { recursive: true, force: true })
    liveDirs.delete(dir)
  }

  try {
    const pki = join(dir, 'pki')
    await mkdir(pki)
    const ips = [...new Set([host, '127.0.0.1'])]
    const certs = await generateTestCertificates(pki, ips, { serverCommonName: 'kube-apiserver' })
    const caPem = certs.ca.toString()
    const saKey = join(pki, 'sa.key')
    const saPub = join(pki, 'sa.pub')
    await execCommand('openssl', [
      'genpkey',
      '-algorithm',
      'RSA',
      '-pkeyopt',
      'rsa_keygen_bits:2048',
      '-out',
      saKey,
    ])
    await execCommand('openssl', ['pkey', '-in', saKey, '-pubout', '-out', saPub])
    const token = randomBytes(24).toString('hex')
    const tokenFile = join(pki, 'tokens.csv')
    await writeFile(tokenFile, `${token},admin,uid-admin,"system:masters"\n`, { mode: 0o600 })
    const issuer = 'https://kubernetes.default.svc'

    etcd = await startEtcd({ host, netns: options.netns })
    const etcdServer = etcd

    const args = (): string[] => [
      `--bind-address=${host}`,
      `--advertise-address=${host}`,
      `--secure-port=${port}`,
      `--etcd-servers=${etcdServer.endpoints.join(',')}`,
      `--tls-cert-file=${certs.serverCertFile}`,
      `--tls-private-key-file=${certs.serverKeyFile}`,
      `--token-auth-file=${tokenFile}`,
      '--authorization-mode=RBAC',
      `--service-account-issuer=${issuer}`,
      `--service-account-key-file=${saPub}`,
      `--service-account-signing-key-file=${saKey}`,
      `--service-cluster-ip-range=${options.serviceClusterIpRange ?? '10.0.0.0/24'}`,
      `--cert-dir=${join(dir, 'cert')}`,
      // Required when advertising a loopback address (v1.37 exits otherwise).
      '--endpoint-reconciler-type=none',
      '--allow-privileged=true',
      '--profiling=false',
      ...(options.extraArgs ?? []),
    ]

    let endpoint: Endpoint = { host, port, ca: caPem }

    const ready = async (proc: ManagedProcess): Promise<void> => {
      const deadline = Date.now() + startTimeoutMs
      for (;;) {
        if (proc.exitCode !== undefined) {
          throw new Error(
            `kube-apiserver exited (${String(proc.exitCode)}) during start-up:\n${proc.stderr().slice(-4000)}`,
          )
        }
        const res = await send(endpoint, token, 'GET', '/readyz', undefined, {
          signal: AbortSignal.timeout(2000),
        }).catch(() => undefined)
        if (res?.status === 200 && res.text.trim() === 'ok') return
        if (Date.now() > deadline) {
          throw new Error(
            `kube-apiserver not ready after ${startTimeoutMs} ms (last /readyz: ${res?.status ?? 'no answer'}):\n` +
              proc.stderr().slice(-4000),
          )
        }
        await sleep(100)
      }
    }

    /** Spawns the server and waits for /readyz; false when the port was taken. */
    const launch = async (): Promise<boolean> => {
      const command = options.netns === undefined ? binary : 'ip'
      const argv =
        options.netns === undefined ? args() : ['netns', 'exec', options.netns, binary, ...args()]
      const proc = spawnProcess(command, argv, { cwd: dir })
      child = proc
      const groups = relay === undefined ? [proc.pid] : [proc.pid, relay.process.pid]
      reaper = spawnReaper({ groups, paths: [dir] })
      try {
        await ready(proc)
        return true
      } catch (err) {
        await stopApiserver()
        if (/address already in use/.test(proc.stderr())) return false
        throw err
      }
    }

    for (let attempt = 0; ; attempt++) {
      if (options.port === undefined) {
        port = options.netns === undefined ? await freeLoopbackPort() : randomHighPort()
      }
      if (options.netns !== undefined) {
        await relay?.close()
        relay = await startNetnsRelay(options.netns, host, port, dir)
        endpoint = { host: '127.0.0.1', port: relay.port, ca: caPem }
      } else {
        endpoint = { host, port, ca: caPem }
      }
      if (await launch()) break
      if (options.port !== undefined || attempt >= 4) {
        throw new Error(
          `kube-apiserver could not bind port ${port}:\n${child?.stderr().slice(-3000)}`,
        )
      }
    }

    const url = `https://${host.includes(':') ? `[${host}]` : host}:${port}`
    const localUrl = relay === undefined ? url : `https://127.0.0.1:${relay.port}`

    const request = <T = unknown>(
      method: string,
      path: string,
      body?: unknown,
      requestOptions: KubeRequestOptions = {},
    ): Promise<KubeResponse<T>> => send<T>(endpoint, token, method, path, body, requestOptions)

    const discovery = new Map<
      string,
      Promise<{ name: string; kind: string; namespaced: boolean }[]>
    >()
    const resourcePath = async (object: KubeObject): Promise<string> => {
      const { apiVersion, kind, metadata } = object
      const base = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`
      let resources = discovery.get(base)
      if (resources === undefined) {
        resources = request<{ resources?: { name: string; kind: string; namespaced: boolean }[] }>(
          'GET',
          base,
        ).then((res) => {
          if (res.status !== 200)
            throw new Error(`discovery of ${base}: HTTP ${res.status} ${res.text}`)
          return res.body.resources ?? []
        })
        discovery.set(base, resources)
        resources.catch(() => discovery.delete(base))
      }
      const resource = (await resources).find((r) => r.kind === kind && !r.name.includes('/'))
      if (resource === undefined) throw new Error(`the server has no kind ${kind} in ${apiVersion}`)
      if (resource.namespaced && metadata.namespace === undefined) {
        throw new Error(`${kind} ${metadata.name} is namespaced but has no metadata.namespace`)
      }
      const ns = resource.namespaced
        ? `/namespaces/${encodeURIComponent(metadata.namespace ?? '')}`
        : ''
      return `${base}${ns}/${resource.name}/${encodeURIComponent(metadata.name)}`
    }

    const writeKubeconfig = async (kc: KubeconfigOptions = {}): Promise<string> => {
      const path = join(dir, kc.fileName ?? `kubeconfig-${randomBytes(4).toString('hex')}.json`)
      const doc = kubeconfigDocument(kc.server ?? localUrl, caPem, kc.token ?? token, kc.userName)
      await writeFile(path, `${JSON.stringify(doc, null, 2)}\n`, { mode: 0o600 })
      return path
    }

    const kubeconfigPath = await writeKubeconfig({
      fileName: 'admin.kubeconfig',
      userName: 'admin',
    })

    return {
      url,
      localUrl,
      host,
      port,
      caFile: certs.caFile,
      caPem,
      token,
      kubeconfigPath,
      serviceAccountKeyFile: saKey,
      serviceAccountPublicKeyFile: saPub,
      serviceAccountIssuer: issuer,
      dir,
      etcd: etcdServer,
      get pid() {
        return child?.exitCode === undefined ? child?.pid : undefined
      },
      request,
      watch: <T = unknown>(
        path: string,
        watchOptions: { readonly token?: string; readonly signal?: AbortSignal } = {},
      ) => openWatch<T>(endpoint, token, path, watchOptions),
      async createNode(name, podCIDRs, annotations) {
        const cidrs =
          podCIDRs === undefined ? [] : typeof podCIDRs === 'string' ? [podCIDRs] : podCIDRs
        const node = {
          apiVersion: 'v1',
          kind: 'Node',
          metadata: { name, ...(annotations === undefined ? {} : { annotations }) },
          spec: cidrs.length === 0 ? {} : { podCIDR: cidrs[0], podCIDRs: [...cidrs] },
        }
        const res = await request<KubeNode>('POST', '/api/v1/nodes', node)
        if (res.status !== 201) {
          throw new Error(`creating node ${name} failed: HTTP ${res.status} ${res.text}`)
        }
        return res.body
      },
      resourcePath,
      async apply(object, applyOptions = {}) {
        const query = new URLSearchParams({
          fieldManager: applyOptions.fieldManager ?? 'flannel-test',
          fieldValidation: 'Strict',
        })
        if (applyOptions.dryRun) query.set('dryRun', 'All')
        if (applyOptions.force) query.set('force', 'true')
        return await request(
          'PATCH',
          `${await resourcePath(object)}?${query.toString()}`,
          JSON.stringify(object),
          { contentType: 'application/apply-patch+yaml', token: applyOptions.token },
        )
      },
      writeKubeconfig,
      async serviceAccountKubeconfig(namespace, name, saOptions = {}) {
        const res = await request<{ status?: { token?: string } }>(
          'POST',
          `/api/v1/namespaces/${encodeURIComponent(namespace)}/serviceaccounts/${encodeURIComponent(name)}/token`,
          {
            apiVersion: 'authentication.k8s.io/v1',
            kind: 'TokenRequest',
            spec: { expirationSeconds: saOptions.expirationSeconds ?? 3600 },
          },
        )
        const saToken = res.body?.status?.token
        if (res.status !== 201 || saToken === undefined) {
          throw new Error(
            `token request for serviceaccount ${namespace}/${name} failed: HTTP ${res.status} ${res.text}`,
          )
        }
        const username = `system:serviceaccount:${namespace}:${name}`
        const path = await writeKubeconfig({
          token: saToken,
          server: saOptions.server,
          userName: `${namespace}-${name}`,
        })
        return { token: saToken, kubeconfigPath: path, username }
      },
      async restart() {
        if (stopped) throw new Error('kube-apiserver was stopped; start a new one')
        await stopApiserver()
        if (!(await launch())) {
          throw new Error(
            `kube-apiserver could not bind port ${port} again:\n${child?.stderr().slice(-3000)}`,
          )
        }
      },
      stop,
      log: () => (child === undefined ? '' : child.stderr().slice(-20_000)),
    }
  } catch (err) {
    await stop()
    throw err
  }
}
