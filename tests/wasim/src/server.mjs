// The simulator core: the WebSocket endpoint Baileys connects to, one Connection per socket (Noise,
// framing, ordered processing), and dispatch of decoded stanzas to the handlers that own them.
import { WebSocketServer } from 'ws'
import { encodeBinaryNode, decodeBinaryNode } from 'baileys'
import { FrameReader, NoiseResponder, frame } from './noise.mjs'
import { buildCertChain } from './certs.mjs'
import { EventLog } from './events.mjs'
import { SimState } from './state.mjs'
import { accountView } from './accounts.mjs'
import { startRegistration } from './pairing.mjs'
import { handleLogin } from './login.mjs'
import { handleIq } from './iq.mjs'
import { handleOutgoingMessage, handleReceipt, handleMessageAck } from './messages.mjs'
import { handleChatstate, handlePresence } from './presence.mjs'
import { firstChild } from './wire.mjs'
import { silentLogger } from './log.mjs'

/** Time a closing connection gets to flush its last stanza before the socket is closed. */
const CLOSE_GRACE_MS = 100
/** After a close handshake this long, give up on the peer and terminate. */
const CLOSE_TIMEOUT_MS = 1000

/** The counters of GET /stats, zeroed. */
function newStats() {
	return {
		iqs: /** @type {Record<string, number>} */ ({}),
		unknown_iqs: /** @type {Record<string, number>} */ ({}),
		stanzas: /** @type {Record<string, number>} */ ({}),
		duplicates: 0
	}
}

/**
 * One client socket. Frames are processed strictly in order (the Noise counters demand it); a failure
 * while handling one closes this connection only.
 */
export class Connection {
	/** @type {'handshake'|'pairing'|'paired'|'open'|'failed'|'closing'|'closed'} */
	stage = 'handshake'
	/** @type {'registration'|'login'|null} */
	kind = null
	/** @type {string | null} */
	#account = null
	/** @type {number | null} */
	device = null
	/** @type {Buffer | null} the client's Noise static public key (what the QR carries) */
	clientStatic = null
	/** @type {string[]} QR refs sent to this connection */
	qrRefs = []
	/** @type {any} registration payload, pairing-code and pair-success bookkeeping (see pairing.mjs) */
	pairing = {}
	/** @type {Set<{ ids: Set<string>, done: () => void }>} */
	#handledWaiters = new Set()
	#handshakeStep = /** @type {'hello'|'finish'|'done'} */ ('hello')
	#noise = new NoiseResponder()
	#reader = new FrameReader()
	#queue = Promise.resolve()
	#closing = false

	/**
	 * @param {Simulator} sim
	 * @param {import('ws').WebSocket} ws
	 * @param {string} id
	 */
	constructor(sim, ws, id) {
		this.sim = sim
		this.ws = ws
		this.id = id
		this.openedAt = Date.now()
		ws.on('message', (/** @type {Buffer} */ data) => {
			this.#queue = this.#queue.then(() => this.#onData(data))
		})
	}

	/** @returns {string | null} account phone, once logged in or paired on this connection */
	get account() {
		return this.#account
	}

	/** Kept in the simulator's per-account index, so finding an account's connections does not scan them all. */
	set account(phone) {
		if (phone === this.#account) return
		this.sim.indexAccount(this, this.#account, phone)
		this.#account = phone
	}

	get isOpen() {
		return this.stage === 'open' && !this.#closing
	}

	/** @param {Buffer} data */
	async #onData(data) {
		if (this.#closing) return
		try {
			for (const f of this.#reader.push(data)) {
				await this.#onFrame(f)
				if (this.#closing) return
			}
		} catch (err) {
			this.fail(err)
		}
	}

	/** @param {Buffer} f */
	async #onFrame(f) {
		if (this.#handshakeStep === 'hello') {
			this.ws.send(frame(this.#noise.serverHello(f, this.sim.state.staticKey, this.sim.certChain)))
			this.#handshakeStep = 'finish'
			return
		}
		if (this.#handshakeStep === 'finish') {
			const { clientStatic, payload } = this.#noise.clientFinish(f)
			this.#handshakeStep = 'done'
			this.clientStatic = clientStatic
			await this.sim.onHandshake(this, payload)
			return
		}
		const node = await decodeBinaryNode(this.#noise.decrypt(f))
		await this.sim.onNode(this, node)
	}

	/**
	 * Encrypt and send one stanza.
	 * @param {import('baileys').BinaryNode} node
	 */
	send(node) {
		if (this.#closing && node.tag !== 'stream:error' && node.tag !== 'failure') return
		if (this.ws.readyState !== this.ws.OPEN) return
		// Checked here so the attribute object is not built per stanza when nobody traces.
		if (this.sim.log.level === 'trace') this.sim.log.trace('>>', { conn: this.id, tag: node.tag, attrs: node.attrs })
		this.ws.send(frame(this.#noise.encrypt(encodeBinaryNode(node))))
	}

	/**
	 * Send a final stanza (stream error or failure) and close the socket shortly after.
	 * @param {import('baileys').BinaryNode} node
	 */
	endWith(node) {
		if (this.#closing) return
		try {
			this.send(node)
		} finally {
			this.close()
		}
	}

	/** Close after a short grace period so the last stanza reaches the client first. */
	close() {
		if (this.#closing) return
		this.#closing = true
		this.stage = 'closing'
		setTimeout(() => {
			this.ws.close(1000)
			setTimeout(() => this.ws.terminate(), CLOSE_TIMEOUT_MS).unref()
		}, CLOSE_GRACE_MS).unref()
	}

	/** Drop the TCP connection with no stanza and no close handshake. */
	terminate() {
		this.#closing = true
		this.stage = 'closing'
		this.ws.terminate()
	}

	/**
	 * Resolve once the client has answered each of these message ids (a receipt of any type, or an ack or nack),
	 * or after timeoutMs.
	 * @param {string[]} ids
	 * @param {number} timeoutMs
	 * @returns {Promise<void>}
	 */
	waitUntilHandled(ids, timeoutMs) {
		return new Promise(resolve => {
			const waiter = {
				ids: new Set(ids),
				done: () => {
					clearTimeout(timer)
					this.#handledWaiters.delete(waiter)
					resolve()
				}
			}
			const timer = setTimeout(waiter.done, timeoutMs)
			this.#handledWaiters.add(waiter)
			this.ws.once('close', waiter.done)
		})
	}

	/** @param {string[]} ids message ids the client just sent a receipt or an ack for */
	noteHandled(ids) {
		for (const waiter of this.#handledWaiters) {
			for (const id of ids) waiter.ids.delete(id)
			if (!waiter.ids.size) waiter.done()
		}
	}

	/**
	 * Log the error, report it as an event and close this connection (never the process).
	 * @param {unknown} err
	 */
	fail(err) {
		const message = err instanceof Error ? err.message : String(err)
		this.sim.log.warn('connection error', { conn: this.id, error: message })
		this.sim.emit('error', { conn_id: this.id, message })
		this.stage = 'failed'
		this.#closing = true
		this.ws.terminate()
	}

	view() {
		return {
			id: this.id,
			account: this.account,
			device: this.device,
			stage: this.stage,
			kind: this.kind,
			opened_at: this.openedAt
		}
	}
}

/** The simulator: state, event log, connections and the WebSocket endpoint. */
export class Simulator {
	/** @type {Map<string, Connection>} */
	connections = new Map()
	/** @type {Set<string>} "contact>account:device@pairedAt" pairs whose privacy token was sent (see messages.mjs) */
	privacyTokensSent = new Set()
	/** @type {Map<string, Set<Connection>>} account phone -> its connections, in the order they took the account */
	#byAccount = new Map()
	/** counters for GET /stats; `duplicates`: messages Baileys sent a contact with an id it already had */
	stats = newStats()
	#nextConnId = 1
	/** @type {WebSocketServer | undefined} */
	#wss

	/**
	 * @param {{ state: SimState, log: import('./log.mjs').Logger }} opts
	 */
	constructor({ state, log }) {
		this.state = state
		this.log = log
		this.events = new EventLog(log.level === 'debug' || log.level === 'trace' ? e => log.debug(`event ${e.type}`, e.data) : undefined)
		this.certChain = buildCertChain(state.rootKey, state.staticKey.public)
		this.wsUrl = ''
		/** set by startControlServer */
		this.controlUrl = ''
	}

	get rootPub() {
		return Buffer.from(this.state.rootKey.public).toString('hex')
	}

	/**
	 * @param {string} type
	 * @param {Record<string, any>} data
	 */
	emit(type, data) {
		return this.events.emit(type, data)
	}

	/**
	 * Start listening.
	 * @param {{ host: string, port: number }} opts
	 */
	async listen({ host, port }) {
		const wss = new WebSocketServer({ host, port, path: '/ws/chat', maxPayload: 32 * 1024 * 1024 })
		this.#wss = wss
		await new Promise((resolve, reject) => {
			wss.once('listening', resolve)
			wss.once('error', reject)
		})
		wss.on('error', err => this.log.error('websocket server error', { error: String(err) }))
		wss.on('connection', ws => this.#accept(ws))
		const address = /** @type {import('node:net').AddressInfo} */ (wss.address())
		const hostPart = address.family === 'IPv6' ? `[${address.address}]` : address.address
		this.wsUrl = `ws://${hostPart}:${address.port}/ws/chat`
		return this.wsUrl
	}

	/** @param {import('ws').WebSocket} ws */
	#accept(ws) {
		const conn = new Connection(this, ws, `c${this.#nextConnId++}`)
		this.connections.set(conn.id, conn)
		this.emit('connection.opened', { conn_id: conn.id })
		ws.on('error', err => this.log.debug('socket error', { conn: conn.id, error: String(err) }))
		ws.on('close', () => {
			conn.stage = conn.stage === 'failed' ? 'failed' : 'closed'
			this.connections.delete(conn.id)
			this.indexAccount(conn, conn.account, null)
			this.emit('connection.closed', { conn_id: conn.id, account: conn.account })
		})
	}

	/**
	 * The Noise handshake finished: a ClientPayload with devicePairingData is a new device registering,
	 * anything else is a login with saved creds.
	 * @param {Connection} conn
	 * @param {import('baileys').proto.ClientPayload} payload
	 */
	async onHandshake(conn, payload) {
		if (payload.devicePairingData) await startRegistration(this, conn, payload.devicePairingData)
		else await handleLogin(this, conn, payload)
	}

	/**
	 * @param {Connection} conn
	 * @param {import('baileys').BinaryNode} node
	 */
	async onNode(conn, node) {
		const first = firstChild(node)
		if (this.log.level === 'trace') this.log.trace('<<', { conn: conn.id, tag: node.tag, attrs: node.attrs, child: first?.tag })
		switch (node.tag) {
			case 'iq':
				await handleIq(this, conn, node)
				return
			case 'message':
				this.#count('stanzas', `<message>`)
				await handleOutgoingMessage(this, conn, node)
				return
			case 'receipt':
				this.#count('stanzas', `<receipt${node.attrs.type ? ' type=' + node.attrs.type : ''}>`)
				await handleReceipt(this, conn, node)
				return
			case 'ack':
				this.#count('stanzas', '<ack>')
				if (node.attrs.class === 'message') handleMessageAck(this, conn, node)
				return
			case 'chatstate':
				this.#count('stanzas', `<chatstate>${first ? `<${first.tag}>` : ''}`)
				handleChatstate(this, conn, node)
				return
			case 'presence':
				this.#count('stanzas', `<presence${node.attrs.type ? ' type=' + node.attrs.type : ''}>`)
				handlePresence(this, conn, node)
				return
			default:
				// <ib><unified_session> and the like: nothing to answer, just count them
				this.#count('stanzas', `<${node.tag}>${first ? `<${first.tag}>` : ''}`)
		}
	}

	/** @param {'iqs'|'unknown_iqs'|'stanzas'} table @param {string} key */
	#count(table, key) {
		this.stats[table][key] = (this.stats[table][key] ?? 0) + 1
	}

	/** @param {import('baileys').BinaryNode} iq @param {boolean} known */
	countIq(iq, known) {
		const key = `${iq.attrs.xmlns ?? '-'} ${iq.attrs.type} <${firstChild(iq)?.tag ?? ''}>`
		this.#count('iqs', key)
		if (!known) this.#count('unknown_iqs', key)
	}

	/**
	 * Logged-in connections of an account, oldest first.
	 * @param {string} phone
	 */
	openConnectionsFor(phone) {
		const conns = this.#byAccount.get(phone)
		return conns ? [...conns].filter(c => c.isOpen) : []
	}

	/** @param {string} phone */
	isConnected(phone) {
		return this.connectionFor(phone) !== undefined
	}

	/** @param {string} phone the newest logged-in connection of the account */
	connectionFor(phone) {
		const conns = this.#byAccount.get(phone)
		if (!conns) return undefined
		/** @type {Connection | undefined} */
		let newest
		for (const c of conns) if (c.isOpen) newest = c
		return newest
	}

	/**
	 * Move a connection in the per-account index (Connection's account setter and close call this).
	 * @param {Connection} conn @param {string | null} from @param {string | null} to
	 */
	indexAccount(conn, from, to) {
		if (from !== null) {
			const set = this.#byAccount.get(from)
			set?.delete(conn)
			if (set && !set.size) this.#byAccount.delete(from)
		}
		// A closed connection is never indexed again (its account is still reported in connection.closed).
		if (to !== null && this.connections.has(conn.id)) {
			let set = this.#byAccount.get(to)
			if (!set) this.#byAccount.set(to, (set = new Set()))
			set.add(conn)
		}
	}

	/** @param {import('./accounts.mjs').Account} account */
	accountView(account) {
		return accountView(account, this.isConnected(account.phone))
	}

	/** Forget accounts, contacts, events and stats; close every connection. Keys stay. */
	reset() {
		for (const conn of this.connections.values()) conn.terminate()
		this.state.reset()
		this.privacyTokensSent.clear()
		this.events.clear()
		this.stats = newStats()
	}

	/** Stop listening, drop all connections and write the state file. */
	async close() {
		for (const conn of this.connections.values()) conn.terminate()
		await new Promise(resolve => (this.#wss ? this.#wss.close(() => resolve(undefined)) : resolve(undefined)))
		this.state.flushSync()
	}
}

/**
 * Create a simulator and start its WebSocket endpoint.
 * @param {{ host?: string, port?: number, stateFile?: string, log?: import('./log.mjs').Logger }} [opts]
 */
export async function startSimulator({ host = '127.0.0.1', port = 0, stateFile, log = silentLogger } = {}) {
	const state = await SimState.open({ file: stateFile, log })
	const sim = new Simulator({ state, log })
	await sim.listen({ host, port })
	return sim
}
