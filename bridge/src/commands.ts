/**
 * Handlers of the connector → bridge methods (PROTOCOL.md "Connector → bridge methods"). Each one validates its
 * params, then calls the session; errors carry protocol codes (RpcError) and become error responses in rpc.ts.
 */
import type { Logger } from 'pino'
import {
	CONNECTOR_METHODS,
	validateParams,
	type ConnectorMethod,
	type ConnectorMethods
} from './protocol.js'
import type { SessionRegistry } from './session.js'

export interface CommandContext {
	registry: SessionRegistry
	log: Logger
	startedAt: number
}

type Handlers = { [M in ConnectorMethod]: (params: ConnectorMethods[M]['params']) => Promise<ConnectorMethods[M]['result']> }

export function makeHandlers({ registry, log, startedAt }: CommandContext): Handlers {
	return {
		ping: async () => ({ pong: true, sessions: registry.size, uptime_ms: Date.now() - startedAt }),

		'session.start': async p => {
			log.info({ session: p.session, new_creds: p.creds === null }, 'session.start')
			return registry.start(p)
		},

		'session.stop': async p => {
			log.info({ session: p.session }, 'session.stop')
			await registry.get(p.session).stop()
			return { stopped: true }
		},

		'session.logout': async p => {
			log.info({ session: p.session }, 'session.logout')
			await registry.get(p.session).logout()
			return { logged_out: true }
		},

		'session.requestPairingCode': async p => ({
			code: await registry.get(p.session).requestPairingCode(p.phone, p.code)
		}),

		'session.list': async () => ({ sessions: registry.list() }),

		'message.send': async p => registry.get(p.session).send(p),

		'presence.send': async p => {
			await registry.get(p.session).sendPresence(p.type, p.to)
			return {}
		},

		'read.send': async p => {
			await registry.get(p.session).read(p.keys)
			return {}
		},

		// a socket that is gone has dropped its held receipts already: nothing to release, and not an error
		'receipts.release': async p => ({ released: registry.find(p.session)?.releaseReceipts(p.ids) ?? 0 })
	}
}

/** the part of RpcPeer this module needs */
export interface HandlerSink {
	handle(method: string, handler: (params: Record<string, unknown>) => unknown): void
}

/** register every method on the peer, each behind its params validator */
export function registerCommands(peer: HandlerSink, ctx: CommandContext): void {
	const handlers = makeHandlers(ctx)
	for (const method of CONNECTOR_METHODS) {
		const handler = handlers[method] as (p: unknown) => Promise<unknown>
		peer.handle(method, params => handler(validateParams(method, params)))
	}
}
