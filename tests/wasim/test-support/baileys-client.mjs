// A real, unmodified Baileys client in its own process, driven over IPC by the tests (harness.mjs).
// Started with `--import ../trust-root.mjs` and WA_SIM_ROOT_PUB so it trusts the simulator's root,
// exactly as the bridge will be. It never reconnects by itself: the test decides, like the bridge would.
import makeWASocket, { initAuthCreds, BufferJSON } from 'baileys'

// libsignal dumps sessions (key material) through console.info; tests must never print keys.
console.log = console.info = console.debug = console.warn = console.error = () => {}

/** A logger that satisfies Baileys' ILogger and says nothing. */
const silent = {
	level: 'silent',
	child: () => silent,
	trace() {},
	debug() {},
	info() {},
	warn() {},
	error() {},
	fatal() {}
}

/** In-memory auth state that can be exported/imported as JSON (like useMultiFileAuthState, minus files). */
let auth = { creds: initAuthCreds(), keys: /** @type {Record<string, Record<string, any>>} */ ({}) }
/** Set by stallKeyWrites: writes are applied, then never answered (a process frozen right after its store wrote). */
let stallWrites = false
const keyStore = {
	get: async (/** @type {string} */ type, /** @type {string[]} */ ids) =>
		Object.fromEntries(ids.filter(id => auth.keys[type]?.[id] != null).map(id => [id, auth.keys[type][id]])),
	set: async (/** @type {Record<string, Record<string, any>>} */ data) => {
		for (const type in data) {
			auth.keys[type] ??= {}
			for (const id in data[type]) {
				if (data[type][id] == null) delete auth.keys[type][id]
				else auth.keys[type][id] = data[type][id]
			}
		}
		if (stallWrites) {
			post('keys.stalled', { types: Object.keys(data) })
			await new Promise(() => {})
		}
	}
}

/** What this client sent, by message id: served to Baileys' getMessage (its retry re-sends), as the bridge does. */
const sent = new Map()

/** @type {ReturnType<typeof makeWASocket> | undefined} */
let sock

const post = (/** @type {string} */ name, /** @type {unknown} */ data) => process.send?.({ kind: 'event', name, data })

/** @type {Record<string, (args: any) => unknown>} */
const commands = {
	/** @param {{ url: string, recentCache?: boolean }} args recentCache: false makes retries go through getMessage */
	connect({ url, recentCache = true }) {
		const s = makeWASocket({
			waWebSocketUrl: url,
			auth: { creds: auth.creds, keys: keyStore },
			logger: silent,
			markOnlineOnConnect: false,
			enableRecentMessageCache: recentCache,
			getMessage: async key => {
				const message = key.id ? sent.get(key.id) : undefined
				post('getMessage', { id: key.id, found: !!message })
				return message
			}
		})
		sock = s
		s.ev.on('creds.update', update => Object.assign(auth.creds, update))
		s.ev.on('connection.update', update => {
			if (s !== sock) return
			const error = /** @type {any} */ (update.lastDisconnect?.error)
			post('connection.update', {
				connection: update.connection,
				qr: update.qr,
				isNewLogin: update.isNewLogin,
				receivedPendingNotifications: update.receivedPendingNotifications,
				statusCode: error?.output?.statusCode
			})
		})
		s.ev.on('messages.upsert', ({ messages, type }) => {
			for (const m of messages) {
				post('messages.upsert', {
					type,
					key: m.key,
					pushName: m.pushName,
					status: m.status,
					text: m.message?.conversation ?? m.message?.extendedTextMessage?.text ?? null
				})
			}
		})
		s.ev.on('messages.update', updates => post('messages.update', updates.map(u => ({ key: u.key, status: u.update.status }))))
		s.ev.on('lid-mapping.update', mapping => post('lid-mapping.update', mapping))
		return true
	},
	end() {
		sock?.end(undefined)
		sock = undefined
		return true
	},
	user: () => sock?.user ?? null,
	me: () => auth.creds.me ?? null,
	async send({ jid, text, id }) {
		const msg = await sock?.sendMessage(jid, { text }, id ? { messageId: id } : {})
		if (msg?.key.id && msg.message) sent.set(msg.key.id, msg.message)
		return msg?.key ?? null
	},
	/** sendPresenceUpdate: composing/paused for one chat (`jid`), available/unavailable for everyone */
	async presence({ type, jid }) {
		await sock?.sendPresenceUpdate(type, jid)
		return true
	},
	/** readMessages: read receipts for these message keys */
	async read({ keys }) {
		await sock?.readMessages(keys)
		return true
	},
	/** Forget every Signal session, as a client whose session store was lost. */
	dropSessions() {
		const n = Object.keys(auth.keys.session ?? {}).length
		delete auth.keys.session
		return n
	},
	/** A new registration id, as a reinstalled app has (its next retry receipts carry it). */
	setRegistrationId({ id }) {
		auth.creds.registrationId = id
		return true
	},
	stallKeyWrites() {
		stallWrites = true
		return true
	},
	pairingCode: ({ phone }) => sock?.requestPairingCode(phone),
	lidForPn: ({ pn }) => sock?.signalRepository.lidMapping.getLIDForPN(pn),
	exportAuth: () => JSON.stringify(auth, BufferJSON.replacer),
	importAuth({ json }) {
		auth = JSON.parse(json, BufferJSON.reviver)
		return true
	}
}

process.on('message', async (/** @type {{ id: number, cmd: string, args?: any }} */ msg) => {
	try {
		const fn = commands[msg.cmd]
		if (!fn) throw new Error(`unknown command ${msg.cmd}`)
		process.send?.({ kind: 'reply', id: msg.id, ok: true, value: (await fn(msg.args ?? {})) ?? null })
	} catch (err) {
		process.send?.({ kind: 'reply', id: msg.id, ok: false, error: err instanceof Error ? err.message : String(err) })
	}
})
process.on('disconnect', () => process.exit(0))
