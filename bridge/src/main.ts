/**
 * Entry point: `node bridge/dist/main.js`, started by the connector with the protocol stream on fd 3
 * (BRIDGE_RPC_FD). Console routing is installed before anything that could print is loaded; then the stream is
 * opened, handlers are wired, and `bridge.ready` is sent. The bridge stops on EOF of the stream or SIGTERM/SIGINT:
 * every socket is closed without logging out, outstanding keys.set/creds.save answers are awaited up to 5 s, exit 0.
 */
import { installConsoleRouting } from './console.js'
import { baileysLogger, logger } from './log.js'

installConsoleRouting(logger)

const { readFileSync } = await import('node:fs')
const { createRequire, register } = await import('node:module')
// before anything imports baileys: the hook that lets the bridge hold delivery receipts and keep each chat's
// messages in order (baileys-hooks.ts)
register('./baileys-hooks.js', import.meta.url)
const { HOOK_MARKERS } = await import('./baileys-hooks.js')
const net = await import('node:net')
const { RpcPeer, errText } = await import('./rpc.js')
const { RpcError, PROTOCOL_VERSION } = await import('./protocol.js')
const { SessionRegistry } = await import('./session.js')
const hooked = globalThis as unknown as Record<string, boolean | undefined>
if (!HOOK_MARKERS.every(m => hooked[m])) {
	logger.fatal({ missing: HOOK_MARKERS.filter(m => !hooked[m]) }, 'the baileys load hook did not run: receipts could not be held, nor messages kept in order')
	process.exit(2)
}
const { registerCommands } = await import('./commands.js')

const SHUTDOWN_GRACE_MS = 8_000
const startedAt = Date.now()

function intEnv(name: string, fallback: number): number {
	const raw = process.env[name]
	if (raw === undefined || raw === '') return fallback
	const n = Number(raw)
	if (!Number.isSafeInteger(n) || n < 0) {
		logger.warn({ name, value: raw }, 'ignoring a bad integer in the environment')
		return fallback
	}
	return n
}

function versions(): { bridge: string; baileys: string } {
	const read = (path: string | URL): string => {
		try {
			return String((JSON.parse(readFileSync(path, 'utf8')) as { version?: string }).version ?? 'unknown')
		} catch {
			return 'unknown'
		}
	}
	let baileysPkg: string | undefined
	try {
		baileysPkg = createRequire(import.meta.url).resolve('baileys/package.json')
	} catch {
		baileysPkg = undefined
	}
	return { bridge: read(new URL('../package.json', import.meta.url)), baileys: baileysPkg ? read(baileysPkg) : 'unknown' }
}

const fd = intEnv('BRIDGE_RPC_FD', 3)
const rpcTimeoutMs = intEnv('BRIDGE_RPC_TIMEOUT_MS', 30_000)

let stream: InstanceType<typeof net.Socket>
try {
	stream = new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: true })
} catch (err) {
	logger.fatal({ fd, err: errText(err) }, 'cannot open the protocol stream (the parent must pass a socket on this fd)')
	process.exit(2)
}

const rpc = new RpcPeer(stream, { logger: logger.child({ component: 'rpc' }), timeoutMs: rpcTimeoutMs })
const registry = new SessionRegistry(rpc, logger, baileysLogger, {
	wsUrl: process.env.WA_WEBSOCKET_URL || undefined,
	rpcTimeoutMs
})
registerCommands(rpc, { registry, log: logger, startedAt })

let stopping = false
async function shutdown(reason: string): Promise<void> {
	if (stopping) return
	stopping = true
	rpc.refuseWith = new RpcError('shutting_down', 'the bridge is stopping and takes no new work')
	logger.info({ reason, sessions: registry.size }, 'bridge stopping')
	const clean = await registry.stopAll(SHUTDOWN_GRACE_MS)
	if (!clean) logger.warn({ sessions: registry.size }, 'sessions still closing after the grace period, exiting anyway')
	await rpc.close(1_000)
	logger.info('bridge stopped')
	process.exit(0)
}

rpc.onEnd(reason => void shutdown(`protocol stream ${reason}`))
process.on('SIGTERM', () => void shutdown('SIGTERM'))
process.on('SIGINT', () => void shutdown('SIGINT'))
process.on('unhandledRejection', reason => {
	// Baileys has fire-and-forget promises; one failing must not take every session down
	logger.error({ err: errText(reason) }, 'unhandled rejection')
})

const v = versions()
rpc.event('bridge.ready', null, {
	protocol: PROTOCOL_VERSION,
	bridge_version: v.bridge,
	baileys_version: v.baileys,
	node_version: process.version,
	pid: process.pid
})
logger.info({ fd, protocol: PROTOCOL_VERSION, baileys: v.baileys, ws_url: process.env.WA_WEBSOCKET_URL ?? null }, 'bridge ready')
