import { execFile } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'

const execFileAsync = promisify(execFile)

/** Paths and contents of a throw-away certificate authority and two leaf certificates. */
export interface TestCertificates {
  /** Directory holding every file. */
  readonly dir: string
  /** The CA certificate (PEM path). */
  readonly caFile: string
  /** Server certificate and key for etcd (SAN: the given IP addresses and `localhost`). */
  readonly serverCertFile: string
  readonly serverKeyFile: string
  /** Client certificate and key (CN `client`). */
  readonly clientCertFile: string
  readonly clientKeyFile: string
  /** The same, read into memory. */
  readonly ca: Buffer
  readonly clientCert: Buffer
  readonly clientKey: Buffer
}

async function openssl(cwd: string, args: string[]): Promise<void> {
  try {
    await execFileAsync('openssl', args, { cwd })
  } catch (err) {
    const e = err as { stderr?: string; message: string }
    throw new Error(`openssl ${args[0]} failed: ${e.stderr?.trim() || e.message}`, { cause: err })
  }
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']

async function leaf(dir: string, name: string, cn: string, ext: string): Promise<void> {
  await openssl(dir, [
    'req',
    ...EC,
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.csr`,
    '-subj',
    `/CN=${cn}`,
  ])
  await writeFile(join(dir, `${name}.ext`), ext)
  await openssl(dir, [
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    'ca.crt',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-days',
    '2',
    '-out',
    `${name}.crt`,
    '-extfile',
    `${name}.ext`,
  ])
}

/** Options of {@link generateTestCertificates}. */
export interface TestCertificateOptions {
  /** Common name of the server certificate (default `etcd`). */
  readonly serverCommonName?: string
}

/**
 * Generates a CA, a server certificate valid for `ips` (default 127.0.0.1)
 * and `localhost`, and a client certificate in `dir`, with the `openssl`
 * command (EC P-256, valid two days). For TLS tests only.
 */
export async function generateTestCertificates(
  dir: string,
  ips: readonly string[] = ['127.0.0.1'],
  options: TestCertificateOptions = {},
): Promise<TestCertificates> {
  await openssl(dir, [
    'req',
    '-x509',
    ...EC,
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
    '-days',
    '2',
    '-subj',
    '/CN=flannel-test-ca',
  ])
  const san = ['DNS:localhost', ...ips.map((ip) => `IP:${ip}`)].join(',')
  await leaf(
    dir,
    'server',
    options.serverCommonName ?? 'etcd',
    `subjectAltName=${san}\nextendedKeyUsage=serverAuth,clientAuth\n`,
  )
  await leaf(dir, 'client', 'client', 'extendedKeyUsage=clientAuth\n')
  const caFile = join(dir, 'ca.crt')
  const clientCertFile = join(dir, 'client.crt')
  const clientKeyFile = join(dir, 'client.key')
  return {
    dir,
    caFile,
    serverCertFile: join(dir, 'server.crt'),
    serverKeyFile: join(dir, 'server.key'),
    clientCertFile,
    clientKeyFile,
    ca: await readFile(caFile),
    clientCert: await readFile(clientCertFile),
    clientKey: await readFile(clientKeyFile),
  }
}
