/**
 * One Baileys socket per session, and the registry of running sessions.
 *
 * A Session lives from session.start until its socket's `close` connection.update has been sent; it never
 * reconnects (the close-code policy belongs to the connector). On close it waits for every creds.save/keys.set the
 * socket issued, seals the auth state, leaves the registry and only then emits `close`, so the connector can start the
 * session again at once from what it stored. What must outlive a socket (the msgRetryCounterCache) is kept in the
 * registry per session id.
 */
import makeWASocket, {
	DEFAULT_CACHE_TTLS,
	proto,
	type AnyMessageContent,
	type AuthenticationCreds,
	type BaileysEventMap,
	type BinaryNode,
	type CacheStore,
	type ConnectionState,
	type MiscMessageGenerationOptions,
	type UserFacingSocketConfig,
	type WAMessage,
	type WAMessageKey,
	type WAPresence,
	type WASocket
} from 'baileys'
import type { Logger } from 'pino'
import { decodeWire, freshCreds, RpcAuthState, type Caller } from './auth-state.js'
import { DecryptBuffer } from './decrypt-buffer.js'
import { MessageOrder } from './message-order.js'
import { meInfo, reduceConnectionUpdate, serializeKey, translateEvent } from './events.js'
import {
	RpcError,
	validateBridgeResult,
	type ConnectionName,
	type EventName,
	type JsonObject,
	type MessageSendParams,
	type MessageSendResult,
	type PresenceType,
	type SessionConfig,
	type SessionListEntry,
	type SessionStartParams,
	type SessionStartResult,
	type WireMessageKey
} from './protocol.js'
import { ReceiptGate, type SendNode } from './receipts.js'
import { errText } from './rpc.js'

/** what a session needs from the protocol peer */
export interface Peer extends Caller {
	event(event: EventName, session: string | null, data: object): boolean
}

export interface SessionEnv {
	/** Baileys waWebSocketUrl (WA_WEBSOCKET_URL); undefined = WhatsApp itself */
	wsUrl?: string
	/** timeout of bridge → connector calls; bounds how long a close waits for outstanding writes */
	rpcTimeoutMs: number
}

// ---------------------------------------------------------------------------------------------------------------

/** A small Map-based CacheStore with a TTL (Baileys' msgRetryCounterCache default is 1 h). */
export class TtlCache implements CacheStore {
	private readonly map = new Map<string, { value: unknown; expires: number }>()

	constructor(
		private readonly ttlMs = 3_600_000,
		private readonly maxEntries = 10_000
	) {}

	get<T>(key: string): T | undefined {
		const e = this.map.get(key)
		if (!e) return undefined
		if (e.expires <= Date.now()) {
			this.map.delete(key)
			return undefined
		}
		return e.value as T
	}

	set<T>(key: string, value: T): void {
		this.map.delete(key)
		this.map.set(key, { value, expires: Date.now() + this.ttlMs })
		if (this.map.size > this.maxEntries) this.prune()
	}

	del(key: string): void {
		this.map.delete(key)
	}

	flushAll(): void {
		this.map.clear()
	}

	get size(): number {
		return this.map.size
	}

	private prune(): void {
		const now = Date.now()
		for (const [k, e] of this.map) if (e.expires <= now) this.map.delete(k)
		// still too big: drop the oldest insertions
		for (const k of this.map.keys()) {
			if (this.map.size <= this.maxEntries) break
			this.map.delete(k)
		}
	}
}

/**
 * Upper bound of one socket's Signal key cache (Baileys' default cache has none; its 5 min TTL is the real bound). A
 * key dropped early is read again with keys.get: the connector holds every key durably before keys.set resolves.
 */
const KEY_CACHE_MAX_ENTRIES = 100_000

const CREDS_FIELDS = ['noiseKey', 'signedIdentityKey', 'signedPreKey', 'registrationId', 'advSecretKey'] as const

function checkCreds(creds: AuthenticationCreds): void {
	for (const f of CREDS_FIELDS) {
		if (creds[f] === undefined || creds[f] === null) throw new RpcError('invalid_params', `creds.${f}: is required`, { field: `creds.${f}` })
	}
	if (!Buffer.isBuffer(creds.noiseKey.private) || !Buffer.isBuffer(creds.signedIdentityKey.private)) {
		throw new RpcError('invalid_params', 'creds: key pairs must be BufferJSON buffers', { field: 'creds.noiseKey' })
	}
}

/** extra time allowed to a socket operation beyond Baileys' own query timeout */
const OPERATION_SLACK_MS = 30_000
const STOP_FALLBACK_MS = 10_000
/** how long a requested stop waits for the connector to make held messages durable before it closes the socket
 * anyway (what is still held is then delivered again by WhatsApp); within the bridge's 5 s shutdown grace */
const RECEIPT_DRAIN_MS = 3_000

/** the socket config this bridge passes: Baileys' own, plus the receipt gate and message order of `baileys-hooks.ts` */
type BridgeSocketConfig = UserFacingSocketConfig & {
	receiptGate: (node: BinaryNode, send: SendNode) => Promise<void>
	messageOrder: MessageOrder
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
	let timer: NodeJS.Timeout | undefined
	try {
		return await Promise.race([
			p,
			new Promise<never>((_, reject) => {
				timer = setTimeout(() => reject(new RpcError('timeout', `${what} did not finish within ${ms} ms`)), ms)
			})
		])
	} finally {
		clearTimeout(timer)
	}
}

function timestampOf(v: unknown): number | string | null {
	if (v === undefined || v === null) return null
	if (typeof v === 'number') return v
	if (typeof v === 'string') return /^\d+$/.test(v) && Number.isSafeInteger(Number(v)) ? Number(v) : v
	const n = v as { toNumber?: () => number; toString(): string }
	if (typeof n.toNumber === 'function') {
		const num = n.toNumber()
		return Number.isSafeInteger(num) ? num : n.toString()
	}
	return String(v)
}

// ---------------------------------------------------------------------------------------------------------------

export class Session {
	connection: ConnectionName = 'connecting'
	qrSeen = false
	/** ms since epoch of the last frame received on the socket (the connector's stale detection) */
	lastReceivedAt: number | null = null
	sock: WASocket | undefined
	auth: RpcAuthState | undefined
	readonly decrypted: DecryptBuffer
	readonly receipts: ReceiptGate
	readonly order: MessageOrder
	private requested = false
	private finishing = false
	private stopWhileStarting = false
	private closeSent!: () => void
	/** resolves once the `close` event has been sent and the session left the registry */
	readonly closed: Promise<void>
	private readonly queryTimeoutMs: number

	constructor(
		readonly id: string,
		private readonly registry: SessionRegistry,
		private readonly peer: Peer,
		private readonly log: Logger,
		private readonly baileysLog: Logger,
		private readonly env: SessionEnv,
		private readonly config: SessionConfig
	) {
		this.closed = new Promise(resolve => {
			this.closeSent = resolve
		})
		this.queryTimeoutMs = (config.defaultQueryTimeoutMs ?? 60_000) + OPERATION_SLACK_MS
		this.decrypted = new DecryptBuffer(log)
		this.order = new MessageOrder(log)
		this.receipts = new ReceiptGate({
			takeDecrypted: () => this.decrypted.takeDecrypted(),
			onReleased: ids => this.decrypted.onReleased(ids),
			onSendError: (err, ids) => this.log.info({ ids: ids.length, err: errText(err) }, 'held receipt not sent; WhatsApp delivers the message again')
		})
	}

	/** create creds if needed (saved before connecting), then the socket; returns as soon as the socket exists */
	async start(wireCreds: JsonObject | null): Promise<SessionStartResult> {
		try {
			return await this.open(wireCreds)
		} catch (err) {
			if (!this.sock) this.abort()
			throw err
		}
	}

	private async open(wireCreds: JsonObject | null): Promise<SessionStartResult> {
		const generated = wireCreds === null
		let creds: AuthenticationCreds
		if (generated) creds = freshCreds()
		else {
			try {
				creds = RpcAuthState.reviveCreds(wireCreds)
			} catch (err) {
				throw new RpcError('invalid_params', `creds: ${errText(err)}`, { field: 'creds' })
			}
			checkCreds(creds)
		}
		this.auth = new RpcAuthState(this.id, this.peer, this.log, creds, {
			// Baileys' default key cache (a NodeCache, same 5 min TTL) measures the size of every value it stores by
			// walking it: ~4 % of the bridge's CPU per inbound message. A Map with the same TTL, no clones.
			keyCache: new TtlCache(DEFAULT_CACHE_TTLS.SIGNAL_STORE * 1000, KEY_CACHE_MAX_ENTRIES),
			onError: message => this.peer.event('session.error', this.id, { message })
		})
		if (generated) {
			// the connector must hold the creds a socket runs with before it connects
			await this.auth.saveCredsNow()
			this.log.info('generated and saved fresh creds')
		}
		if (this.stopWhileStarting) {
			this.requested = true
			await this.finish({ connection: 'close' })
			return { session: this.id, generated_creds: generated }
		}
		try {
			this.sock = makeWASocket(this.socketConfig())
		} catch (err) {
			const message = `socket could not be created: ${errText(err)}`
			this.log.error({ err: errText(err) }, 'socket could not be created')
			this.peer.event('session.error', this.id, { message })
			throw new RpcError('internal', message)
		}
		this.sock.ev.process(events => this.onEvents(events))
		// every decoded frame, keep-alive answers included (Baileys pings every 30 s)
		this.sock.ws.on('frame', () => {
			this.lastReceivedAt = Date.now()
		})
		this.log.info({ registered: !!creds.registered, me: creds.me?.id ?? null }, 'socket created')
		return { session: this.id, generated_creds: generated }
	}

	/** the start failed before a socket existed: leave the registry without a close event (start answers the error) */
	private abort(): void {
		if (this.finishing) return
		this.finishing = true
		this.connection = 'close'
		this.auth?.seal('start failed')
		this.registry.remove(this)
		this.closeSent()
	}

	private socketConfig(): BridgeSocketConfig {
		const c = this.config
		const cfg: BridgeSocketConfig = {
			auth: this.auth!.state,
			logger: this.baileysLog,
			markOnlineOnConnect: false,
			syncFullHistory: false,
			msgRetryCounterCache: this.registry.retryCache(this.id),
			getMessage: key => this.getMessage(key),
			makeSignalRepository: this.decrypted.makeRepository,
			receiptGate: this.receipts.gate,
			messageOrder: this.order
		}
		if (this.env.wsUrl) cfg.waWebSocketUrl = this.env.wsUrl
		if (c.browser) cfg.browser = c.browser
		if (c.version) cfg.version = c.version
		if (c.connectTimeoutMs) cfg.connectTimeoutMs = c.connectTimeoutMs
		if (c.keepAliveIntervalMs) cfg.keepAliveIntervalMs = c.keepAliveIntervalMs
		if (c.defaultQueryTimeoutMs) cfg.defaultQueryTimeoutMs = c.defaultQueryTimeoutMs
		if (c.qrTimeoutMs) cfg.qrTimeout = c.qrTimeoutMs
		return cfg
	}

	/** Baileys' getMessage (retries, poll votes): asks the connector; a failure means "unknown" */
	private async getMessage(key: WAMessageKey): Promise<proto.IMessage | undefined> {
		const message = await this.fetchMessage(serializeKey(key))
		return message ?? undefined
	}

	private async fetchMessage(key: WireMessageKey): Promise<proto.IMessage | null> {
		try {
			const r = validateBridgeResult('message.get', await this.peer.call('message.get', { session: this.id, key }))
			if (!r.message) return null
			return proto.Message.fromObject(decodeWire<Record<string, unknown>>(r.message))
		} catch (err) {
			this.log.warn({ id: key.id, err: errText(err) }, 'message.get failed')
			return null
		}
	}

	// -- events ---------------------------------------------------------------------------------------------------

	private onEvents(events: Partial<BaileysEventMap>): void {
		for (const name of Object.keys(events) as (keyof BaileysEventMap)[]) {
			const payload = events[name]
			try {
				if (name === 'creds.update') this.auth?.saveCreds()
				else if (name === 'connection.update') this.onConnectionUpdate(payload as Partial<ConnectionState>)
				else {
					const wire = translateEvent(name, payload as never)
					if (wire) this.peer.event(wire.event, this.id, wire.data)
				}
			} catch (err) {
				this.log.error({ event: name, err: errText(err) }, 'event could not be forwarded')
				this.peer.event('session.error', this.id, { message: `${name} could not be forwarded: ${errText(err)}` })
			}
		}
	}

	private onConnectionUpdate(update: Partial<ConnectionState>): void {
		if (update.qr) this.qrSeen = true
		if (update.receivedPendingNotifications) this.decrypted.caughtUp()
		if (update.connection === 'close') {
			void this.finish(update)
			return
		}
		if (update.connection === 'open') this.connection = 'open'
		else if (update.connection === 'connecting') this.connection = 'connecting'
		const data = reduceConnectionUpdate(update, { me: this.me() })
		if (update.connection) this.log.info({ connection: update.connection }, 'connection update')
		if (update.qr) this.log.info('qr received')
		if (Object.keys(data).length) this.peer.event('connection.update', this.id, data)
	}

	private async finish(update: Partial<ConnectionState>): Promise<void> {
		if (this.finishing) return
		this.finishing = true
		this.connection = 'close'
		const statusCode = (update.lastDisconnect?.error as { output?: { statusCode?: number } } | undefined)?.output?.statusCode ?? null
		this.log.info({ statusCode, requested: this.requested, reason: update.lastDisconnect?.error?.message }, 'socket closed')
		const unsent = this.receipts.close()
		if (unsent.length) this.log.info({ messages: unsent.length }, 'receipts of messages not yet durable were not sent; WhatsApp delivers them again')
		await this.decrypted.flush()
		if (this.auth) {
			const drained = await this.auth.drain(this.env.rpcTimeoutMs * 2 + 5_000)
			if (!drained) this.log.warn({ pending: this.auth.pendingWrites }, 'close sent before every key/creds write was answered')
			this.auth.seal('socket closed')
		}
		this.registry.remove(this)
		try {
			const closing = { requested: this.requested, credsSaved: this.auth?.credsStored ?? true }
			this.peer.event('connection.update', this.id, reduceConnectionUpdate({ ...update, connection: 'close' }, closing))
		} finally {
			this.closeSent()
		}
	}

	// -- commands -------------------------------------------------------------------------------------------------

	me(): ReturnType<typeof meInfo> {
		return meInfo(this.auth?.creds.me)
	}

	/** close without logging out, once the messages this socket decrypted are durable (or after RECEIPT_DRAIN_MS);
	 * resolves after the `close` event was sent */
	async stop(): Promise<void> {
		this.requested = true
		if (!this.finishing) {
			if (!this.sock) this.stopWhileStarting = true
			else {
				const sock = this.sock
				// emit what Baileys still buffers, so the connector can make it durable and release its receipts
				sock.ev.flush()
				if (!(await this.receipts.drained(RECEIPT_DRAIN_MS))) {
					this.log.warn({ held: this.receipts.heldCount }, 'closing with receipts still held; WhatsApp delivers those messages again')
				}
				void sock.end(undefined)
				// Baileys always reports the close; if it ever does not, do not hang the caller
				const fallback = setTimeout(() => {
					this.log.warn('socket did not report its close, finishing anyway')
					void this.finish({ connection: 'close' })
				}, STOP_FALLBACK_MS)
				void this.closed.then(() => clearTimeout(fallback))
			}
		}
		await this.closed
	}

	private requireOpen(what: string): WASocket {
		if (this.connection !== 'open' || !this.sock || this.finishing) {
			throw new RpcError('not_connected', `${what}: session ${this.id} is not open (${this.finishing ? 'closing' : this.connection})`)
		}
		return this.sock
	}

	async logout(): Promise<void> {
		const sock = this.requireOpen('session.logout')
		this.requested = true
		try {
			await withTimeout(sock.logout(), this.queryTimeoutMs, 'logout')
		} catch (err) {
			if (!this.finishing) this.requested = false
			throw err
		}
		await this.closed
	}

	async requestPairingCode(phone: string, code?: string): Promise<string> {
		if (this.auth?.creds.registered || this.auth?.creds.account) {
			throw new RpcError('already_paired', `session ${this.id} has registered creds`)
		}
		if (!this.qrSeen || !this.sock || this.finishing || this.connection === 'open') {
			throw new RpcError('pairing_not_ready', `session ${this.id} has not opened its QR window yet`)
		}
		const result = await withTimeout(this.sock.requestPairingCode(phone, code), this.queryTimeoutMs, 'requestPairingCode')
		this.log.info('pairing code requested')
		return result
	}

	async send(params: MessageSendParams): Promise<MessageSendResult> {
		const sock = this.requireOpen('message.send')
		const content = decodeWire<AnyMessageContent>(params.content)
		const options: MiscMessageGenerationOptions = {}
		if (params.options?.messageId) options.messageId = params.options.messageId
		const quoted = params.options?.quoted
		if (quoted) {
			const message = quoted.message ? proto.Message.fromObject(decodeWire<Record<string, unknown>>(quoted.message)) : await this.fetchMessage(quoted.key)
			if (message) options.quoted = { key: quoted.key as WAMessageKey, message } as WAMessage
			else this.log.warn({ id: quoted.key.id }, 'quoted message unknown to the connector, sending without the quote')
		}
		const sent = await withTimeout(sock.sendMessage(params.to, content, options), this.queryTimeoutMs, 'message.send')
		if (!sent) throw new RpcError('internal', 'Baileys returned no message for the send')
		this.log.info({ id: sent.key.id }, 'message sent')
		return { key: serializeKey(sent.key), messageTimestamp: timestampOf(sent.messageTimestamp) }
	}

	async sendPresence(type: PresenceType, to?: string): Promise<void> {
		const sock = this.requireOpen('presence.send')
		await withTimeout(sock.sendPresenceUpdate(type as WAPresence, to), this.queryTimeoutMs, 'presence.send')
	}

	/** the connector made these messages durable (or decided not to publish them): send their held receipts */
	releaseReceipts(ids: string[]): number {
		return this.receipts.release(ids)
	}

	async read(keys: WireMessageKey[]): Promise<void> {
		const sock = this.requireOpen('read.send')
		await withTimeout(sock.readMessages(keys as WAMessageKey[]), this.queryTimeoutMs, 'read.send')
	}

	listEntry(): SessionListEntry {
		return {
			session: this.id,
			connection: this.connection,
			has_qr: this.qrSeen && this.connection !== 'open',
			me: this.me() ?? null,
			lastReceivedAt: this.lastReceivedAt,
			heldReceipts: this.receipts.heldCount,
			bufferHits: this.decrypted.hits
		}
	}
}

// ---------------------------------------------------------------------------------------------------------------

export class SessionRegistry {
	private readonly sessions = new Map<string, Session>()
	private readonly retryCaches = new Map<string, TtlCache>()

	constructor(
		private readonly peer: Peer,
		private readonly log: Logger,
		private readonly baileysLog: Logger,
		private readonly env: SessionEnv
	) {}

	get size(): number {
		return this.sessions.size
	}

	/** the per-session msgRetryCounterCache, kept across sockets */
	retryCache(id: string): TtlCache {
		let c = this.retryCaches.get(id)
		if (!c) this.retryCaches.set(id, (c = new TtlCache()))
		return c
	}

	async start(params: SessionStartParams): Promise<SessionStartResult> {
		if (this.sessions.has(params.session)) throw new RpcError('session_exists', `session ${params.session} is still running`)
		const session = new Session(
			params.session,
			this,
			this.peer,
			this.log.child({ session: params.session }),
			this.baileysLog.child({ session: params.session }),
			this.env,
			params.config ?? {}
		)
		this.sessions.set(params.session, session)
		return session.start(params.creds)
	}

	/** the running session, if any */
	find(id: string): Session | undefined {
		return this.sessions.get(id)
	}

	/** the running session, or session_not_found */
	get(id: string): Session {
		const s = this.sessions.get(id)
		if (!s) throw new RpcError('session_not_found', `no running socket for session ${id}`)
		return s
	}

	remove(session: Session): void {
		if (this.sessions.get(session.id) === session) this.sessions.delete(session.id)
	}

	list(): SessionListEntry[] {
		return [...this.sessions.values()].map(s => s.listEntry())
	}

	/** stop every session (no logout); resolves when all have closed or `ms` passed */
	async stopAll(ms: number): Promise<boolean> {
		const all = [...this.sessions.values()].map(s =>
			s.stop().catch(err => this.log.warn({ session: s.id, err: errText(err) }, 'stop failed'))
		)
		if (!all.length) return true
		let timer: NodeJS.Timeout | undefined
		const done = await Promise.race([
			Promise.all(all).then(() => true),
			new Promise<boolean>(resolve => {
				timer = setTimeout(() => resolve(false), ms)
			})
		])
		clearTimeout(timer)
		return done
	}
}
