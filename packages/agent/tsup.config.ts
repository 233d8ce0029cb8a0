import { createRequire } from 'node:module'
import { readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { defineConfig, type Options } from 'tsup'

type Plugin = NonNullable<Options['esbuildPlugins']>[number]

const here = dirname(fileURLToPath(import.meta.url))

/**
 * Packages the bundled command leaves to Node's resolver: the udp backend
 * (its native addon is found relative to its own dist) and the large SDKs
 * that only one mode or one cloud backend loads, on first use. netlink's
 * JavaScript is inlined; its native addon stays in the netlink package (see
 * {@link netlinkAddon}).
 */
const EXTERNAL = [
  '@flannel/backend-udp',
  '@kubernetes/client-node',
  '@aws-sdk/client-ec2',
  '@google-cloud/compute',
  '@alicloud/pop-core',
]

/** Everything else is inlined (esbuild's `external` loses against a catch-all `noExternal`). */
const INLINE = new RegExp(
  `^(?!(${EXTERNAL.map((name) => name.replace(/[/.]/g, (c) => `\\${c}`)).join('|')})(/|$))`,
)

/**
 * etcd3 parses its .proto files with protobufjs when it is loaded (about a
 * third of the agent's start-up); in the bundle they are parsed at build time
 * and inlined as protobufjs JSON, and the same package definition is built
 * from that with `fromJSON` (same options).
 */
function etcdProtos(): Plugin {
  return {
    name: 'etcd3-protos',
    setup(build) {
      build.onLoad({ filter: /[\\/]etcd3[\\/]lib[\\/]connection-pool\.js$/ }, async (args) => {
        const source = await readFile(args.path, 'utf8')
        const req = createRequire(args.path)
        const util = req(join(dirname(req.resolve('@grpc/proto-loader')), 'util.js')) as {
          loadProtosWithOptionsSync(file: string, options: object): { toJSON(): unknown }
        }
        const options = {
          keepCase: true,
          longs: String,
          enums: String,
          defaults: true,
          oneofs: true,
        }
        const root = util.loadProtosWithOptionsSync(
          join(dirname(args.path), '../proto/rpc.proto'),
          options,
        )
        const call = '(0, proto_loader_1.loadSync)(`${__dirname}/../proto/rpc.proto`, {'
        if (!source.includes(call)) throw new Error(`etcd3 changed: ${args.path} has no ${call}`)
        const json = JSON.stringify(root.toJSON())
        return {
          contents: source.replace(call, `(0, proto_loader_1.fromJSON)(${json}, {`),
          loader: 'js',
        }
      })
    },
  }
}

/**
 * netlink's JavaScript in the bundle: its addon is still loaded by
 * node-gyp-build from the installed netlink package (a dependency of this
 * one), found from the bundle's location instead of `__dirname`; and its
 * nl80211 and WireGuard families, which no flannel code uses (a third of
 * its code), are left out.
 */
function netlinkAddon(): Plugin {
  return {
    name: 'netlink-addon',
    setup(build) {
      build.onLoad({ filter: /[\\/]netlink[\\/]dist[\\/]raw\.js$/ }, async (args) => {
        const source = await readFile(args.path, 'utf8')
        const call = "require('node-gyp-build')(__dirname + '/..')"
        if (!source.includes(call)) throw new Error(`netlink changed: ${args.path} has no ${call}`)
        const dir = "require('node:path').dirname(require.resolve('netlink/package.json'))"
        return { contents: source.replace(call, `require('node-gyp-build')(${dir})`), loader: 'js' }
      })
      build.onLoad({ filter: /[\\/]netlink[\\/]dist[\\/](nl80211|wg)[\\/][a-z0-9]+\.js$/ }, () => ({
        contents: 'module.exports = {}',
        loader: 'js',
      }))
    },
  }
}

/**
 * The backend table of the command with static imports, so that each backend
 * becomes its own chunk of the bundle (loaded on first use, sharing the one
 * copy of @flannel/core and rxjs) instead of a package resolved at run time.
 */
const BUNDLE_TABLE = join(here, 'src/backends-bundle.ts')

function staticBackends(): Plugin {
  return {
    name: 'static-backends',
    setup(build) {
      build.onResolve({ filter: /^\.\/backends\.js$/ }, (args) =>
        args.importer.startsWith(join(here, 'src')) && args.importer !== BUNDLE_TABLE
          ? { path: BUNDLE_TABLE }
          : undefined,
      )
    },
  }
}

export default defineConfig([
  {
    entry: ['src/index.ts'],
    format: ['esm', 'cjs'],
    dts: true,
    clean: true,
    sourcemap: true,
    target: 'node20',
  },
  {
    // The `flannel-agent` command as one ESM file (plus a chunk per backend):
    // start-up reads and compiles it instead of resolving some 400 modules.
    entry: { cli: 'src/cli.ts' },
    format: ['esm'],
    dts: false,
    clean: false,
    sourcemap: true,
    target: 'node20',
    platform: 'node',
    splitting: true,
    treeshake: false,
    noExternal: [INLINE],
    external: EXTERNAL,
    esbuildPlugins: [etcdProtos(), netlinkAddon(), staticBackends()],
    banner: {
      // CommonJS dependencies inside an ES module still call require().
      js: "import { createRequire as __flannelCreateRequire } from 'node:module'; const require = __flannelCreateRequire(import.meta.url);",
    },
  },
])
