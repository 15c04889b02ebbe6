// The HTTP/JSON control API tests drive the simulator with (see README.md for the contract). Every
// handler validates its input; errors are {"error": {code, message}} with a 4xx/5xx status, and nothing
// a request does can throw out of the server.
import http from 'node:http'
import { SimError, badRequest, conflict, notFound, notConnected } from './errors.mjs'
import { MAX_EVENTS } from './events.mjs'
import { Contact } from './contacts.mjs'
import { scanQr, enterPairingCode } from './pairing.mjs'
import { sendContactMessage, readMessages } from './messages.mjs'
import { sendLidMapping } from './lid-mapping.mjs'
import { disconnectAccount } from './disconnect.mjs'
import { bareUser } from './wire.mjs'

const MAX_BODY_BYTES = 1024 * 1024
/** send-batch bodies carry up to MAX_BATCH messages, so they get a larger limit. */
const MAX_BATCH_BODY_BYTES = 16 * 1024 * 1024
const MAX_BATCH = 5000
const DEFAULT_WAIT_MS = 10_000
const MAX_WAIT_MS = 300_000

/**
 * @typedef {import('./server.mjs').Simulator} Simulator
 * @typedef {{ sim: Simulator, body: Record<string, any>, query: URLSearchParams, signal: AbortSignal }} Ctx
 * @typedef {(ctx: Ctx) => unknown | Promise<unknown>} Route
 */

// ---- input validation ----

/** @param {Record<string, any>} body @param {string} field */
function requireUser(body, field) {
	if (body[field] === undefined || body[field] === null) throw badRequest(`${field} is required`)
	const user = bareUser(body[field])
	if (!user) throw badRequest(`${field} must be a phone number / LID (digits) or a jid`)
	return user
}

/** @param {Record<string, any>} body @param {string} field @param {number} min @param {number} max */
function optionalInt(body, field, min, max) {
	const v = body[field]
	if (v === undefined || v === null) return undefined
	const n = typeof v === 'string' && /^-?\d+$/.test(v) ? Number(v) : v
	if (!Number.isInteger(n) || n < min || n > max) throw badRequest(`${field} must be an integer between ${min} and ${max}`)
	return /** @type {number} */ (n)
}

/** @template {string} T @param {Record<string, any>} body @param {string} field @param {readonly T[]} allowed @param {T} fallback */
function optionalEnum(body, field, allowed, fallback) {
	const v = body[field]
	if (v === undefined || v === null) return fallback
	if (!allowed.includes(v)) throw badRequest(`${field} must be one of ${allowed.map(a => JSON.stringify(a)).join(', ')}`)
	return /** @type {T} */ (v)
}

/** @param {Record<string, any>} body @param {string} field @param {{ required?: boolean, max?: number, pattern?: RegExp }} [opts] */
function optionalString(body, field, { required = false, max = 256, pattern } = {}) {
	const v = body[field]
	if (v === undefined || v === null) {
		if (required) throw badRequest(`${field} is required`)
		return undefined
	}
	if (typeof v !== 'string') throw badRequest(`${field} must be a string`)
	if (v.length > max) throw badRequest(`${field} is longer than ${max} characters`)
	if (pattern && !pattern.test(v)) throw badRequest(`${field} has an invalid format`)
	return v
}

/** @param {Record<string, any>} body @param {string} field */
function optionalBool(body, field) {
	const v = body[field]
	if (v === undefined || v === null) return undefined
	if (typeof v !== 'boolean') throw badRequest(`${field} must be true or false`)
	return v
}

/** @param {URLSearchParams} query @param {string} name @param {number} min @param {number} max */
function queryInt(query, name, min, max) {
	const raw = query.get(name)
	if (raw === null || raw === '') return undefined
	if (!/^\d+$/.test(raw)) throw badRequest(`${name} must be a non-negative integer`)
	return optionalInt({ [name]: Number(raw) }, name, min, max)
}

/** @param {Simulator} sim @param {string} phone */
function accountOr404(sim, phone) {
	const account = sim.state.accounts.get(phone) ?? sim.state.accountByLid(phone)
	if (!account) throw notFound(`no account ${phone}`)
	return account
}

/** @param {Simulator} sim @param {string} user phone or LID */
function contactOr404(sim, user) {
	const contact = sim.state.contactByUser(user)
	if (!contact) throw notFound(`no contact ${user}`)
	return contact
}

/** The phone number, LID and device of a pairing request. */
function pairingFields(/** @type {Record<string, any>} */ body) {
	return {
		phone: requireUser(body, 'phone'),
		lid: requireUser(body, 'lid'),
		device: optionalInt(body, 'device', 1, 99),
		name: optionalString(body, 'name', { max: 100 })
	}
}

// ---- routes ----

/** @type {Record<string, Record<string, Route>>} path -> method -> handler */
const ROUTES = {
	'/health': { GET: () => ({ ok: true }) },
	'/info': { GET: ({ sim }) => info(sim) },
	'/reset': {
		POST: ({ sim }) => {
			sim.reset()
			return {}
		}
	},
	'/qr/scan': {
		POST: ({ sim, body }) => {
			const qr = optionalString(body, 'qr', { required: true, max: 2048 })
			const account = scanQr(sim, { qr: /** @type {string} */ (qr), ...pairingFields(body) })
			return { account: sim.accountView(account) }
		}
	},
	'/pairing-code/enter': {
		POST: async ({ sim, body }) => {
			const raw = optionalString(body, 'code', { required: true, max: 32 })
			const code = /** @type {string} */ (raw).replace(/[\s-]/g, '').toUpperCase()
			if (!/^[0-9A-Z]{8}$/.test(code)) throw badRequest('code must be the 8-character pairing code')
			const account = await enterPairingCode(sim, { code, ...pairingFields(body) })
			return { account: sim.accountView(account) }
		}
	},
	'/accounts': { GET: ({ sim }) => ({ accounts: [...sim.state.accounts.values()].map(a => sim.accountView(a)) }) },
	'/contacts': {
		GET: ({ sim }) => ({ contacts: [...sim.state.contacts.values()].map(c => c.view()) }),
		POST: ({ sim, body }) => ({ contact: addContact(sim, body).view() })
	},
	'/messages/send': {
		POST: ({ sim, body }) => {
			const request = lookUpSend(sim, parseSend(body))
			return sendContactMessage(sim, request)
		}
	},
	'/messages/send-batch': { POST: ({ sim, body }) => sendBatch(sim, body) },
	'/messages/pending': {
		GET: ({ sim, query }) => {
			const user = requireUser({ account: query.get('account') || undefined }, 'account')
			const held = sim.state.pending.get(accountOr404(sim, user).phone)?.values() ?? []
			return {
				pending: [...held].map(m => ({ from: m.from, id: m.id, enc: m.enc, sent_at: m.sentAt, deliveries: m.deliveries, retries: m.retries }))
			}
		}
	},
	'/contacts/fail-next-decrypt': {
		POST: ({ sim, body }) => {
			const contact = contactOr404(sim, requireUser(body, 'contact'))
			const account = accountOr404(sim, requireUser(body, 'account'))
			contact.failNextFrom(account.phone, optionalInt(body, 'times', 1, 100) ?? 1)
			return {}
		}
	},
	'/contacts/read': {
		POST: ({ sim, body }) => {
			const contact = contactOr404(sim, requireUser(body, 'contact'))
			const account = accountOr404(sim, requireUser(body, 'account'))
			const ids = body.ids === undefined ? undefined : body.ids
			if (ids !== undefined && (!Array.isArray(ids) || ids.length > 1000 || !ids.every(i => typeof i === 'string' && i.length > 0 && i.length <= 128))) {
				throw badRequest('ids: an array of up to 1000 message ids')
			}
			return { read: readMessages(sim, contact, account, ids) }
		}
	},
	'/lid-mapping': {
		POST: ({ sim, body }) => {
			const to = requireUser(body, 'to')
			const lid = requireUser(body, 'lid')
			const pn = requireUser(body, 'pn')
			sendLidMapping(sim, { account: accountOr404(sim, to), lid, pn })
			return {}
		}
	},
	'/disconnect': {
		POST: ({ sim, body }) => {
			const user = requireUser(body, 'account')
			const code = optionalInt(body, 'code', 100, 999) ?? 515
			const mode = optionalEnum(body, 'mode', /** @type {const} */ (['stream_error', 'drop']), 'stream_error')
			return { closed: disconnectAccount(sim, { phone: accountOr404(sim, user).phone, code, mode }) }
		}
	},
	'/connections': { GET: ({ sim }) => ({ connections: [...sim.connections.values()].map(c => c.view()) }) },
	'/events': {
		GET: ({ sim, query }) => {
			const events = sim.events.list({
				after: queryInt(query, 'after', 0, Number.MAX_SAFE_INTEGER),
				type: query.get('type') || undefined,
				limit: queryInt(query, 'limit', 1, MAX_EVENTS)
			})
			return { events, last_seq: sim.events.lastSeq }
		}
	},
	'/events/wait': {
		POST: async ({ sim, body, signal }) => {
			const type = optionalString(body, 'type', { required: true, max: 64 })
			const match = body.match
			if (match !== undefined && match !== null && (typeof match !== 'object' || Array.isArray(match))) {
				throw badRequest('match must be an object of {"dotted.path": value}')
			}
			const event = await sim.events.wait({
				type: /** @type {string} */ (type),
				match: match ?? undefined,
				after: optionalInt(body, 'after', 0, Number.MAX_SAFE_INTEGER),
				timeoutMs: optionalInt(body, 'timeout_ms', 0, MAX_WAIT_MS) ?? DEFAULT_WAIT_MS,
				signal
			})
			if (!event) throw new SimError(408, 'timeout', `no ${type} event matched in time`)
			return { event }
		}
	},
	'/stats': { GET: ({ sim }) => sim.stats }
}

/**
 * Routes with a path parameter: [pattern, method -> handler(ctx, parameter)].
 * @type {[RegExp, Record<string, (ctx: Ctx, param: string) => unknown>][]}
 */
const PARAM_ROUTES = [
	[
		/^\/contacts\/([^/]+)\/received$/,
		{
			// What the contact's phone received from the accounts: one entry per message id, `count` = arrivals.
			GET: ({ sim, query }, phone) => {
				let user
				try {
					user = decodeURIComponent(phone)
				} catch {
					throw badRequest('phone in the path is not valid percent-encoding')
				}
				const contact = contactOr404(sim, requireUser({ phone: user }, 'phone'))
				const accountUser = query.get('account')
				const account = accountUser ? accountOr404(sim, requireUser({ account: accountUser }, 'account')).phone : undefined
				return { messages: contact.received(account) }
			}
		}
	]
]

/**
 * Validate a /messages/send body (no look-ups), so bad input is always a 400.
 * @param {Record<string, any>} body
 */
function parseSend(body) {
	if (body === null || typeof body !== 'object' || Array.isArray(body)) throw badRequest('a message must be a JSON object')
	const fromUser = requireUser(body, 'from')
	const toUser = requireUser(body, 'to')
	if (typeof body.text !== 'string') throw badRequest('text is required and must be a string')
	if (body.text.length > 65_536) throw badRequest('text is too long')
	return {
		fromUser,
		toUser,
		text: body.text,
		addressing: optionalEnum(body, 'addressing', /** @type {const} */ (['pn', 'lid']), 'pn'),
		id: optionalString(body, 'id', { max: 128, pattern: /^[A-Za-z0-9._:-]+$/ }),
		alt: optionalBool(body, 'alt') ?? true,
		ifOffline: optionalEnum(body, 'if_offline', /** @type {const} */ (['error', 'queue']), 'error')
	}
}

/**
 * Resolve the contact and account of a parsed send (404s).
 * @param {Simulator} sim
 * @param {ReturnType<typeof parseSend>} parsed
 */
function lookUpSend(sim, { fromUser, toUser, ...options }) {
	return { contact: contactOr404(sim, fromUser), account: accountOr404(sim, toUser), ...options }
}

/** Prefix a validation error with the index of the batch item that caused it. */
function atIndex(/** @type {unknown} */ err, /** @type {number} */ i) {
	if (err instanceof SimError) return new SimError(err.status, err.code, `messages[${i}]: ${err.message}`)
	return err
}

/**
 * POST /messages/send-batch: many /messages/send bodies at once, for load. Every item is validated and looked
 * up before anything is sent (an error names the item's index and nothing is sent). All sends then start at
 * once: each contact's Signal operations are serialised by its lock in call order, so one contact's messages
 * to one account leave in batch order, while different contacts interleave. Answers once every message was
 * written to its socket (or queued), with the results in batch order.
 * @param {Simulator} sim
 * @param {Record<string, any>} body
 */
async function sendBatch(sim, body) {
	const items = body.messages
	if (!Array.isArray(items)) throw badRequest('messages must be an array of /messages/send bodies')
	if (items.length > MAX_BATCH) throw badRequest(`messages has more than ${MAX_BATCH} items`)
	const parsed = items.map((item, i) => {
		try {
			return parseSend(item)
		} catch (err) {
			throw atIndex(err, i)
		}
	})
	const requests = parsed.map((p, i) => {
		try {
			const request = lookUpSend(sim, p)
			// Fail up front rather than half-way through the batch.
			if (request.ifOffline !== 'queue' && !sim.isConnected(request.account.phone)) {
				throw notConnected(`account ${request.account.phone} has no open connection`)
			}
			return request
		} catch (err) {
			throw atIndex(err, i)
		}
	})
	const settled = await Promise.allSettled(requests.map(r => sendContactMessage(sim, r)))
	const failed = settled.findIndex(s => s.status === 'rejected')
	if (failed >= 0) {
		const sent = settled.filter(s => s.status === 'fulfilled').length
		const err = atIndex(/** @type {PromiseRejectedResult} */ (settled[failed]).reason, failed)
		if (err instanceof SimError) err.message += ` (${sent} of ${items.length} messages were sent)`
		throw err
	}
	return { results: settled.map(s => /** @type {PromiseFulfilledResult<any>} */ (s).value) }
}

/** @param {Simulator} sim */
function info(sim) {
	return { ws_url: sim.wsUrl, control_url: sim.controlUrl, root_pub: sim.rootPub }
}

/**
 * Create a contact, or return the existing one for that phone (idempotent).
 * @param {Simulator} sim
 * @param {Record<string, any>} body
 */
function addContact(sim, body) {
	const phone = requireUser(body, 'phone')
	const lid = requireUser(body, 'lid')
	const name = optionalString(body, 'name', { max: 100 })
	const { state } = sim
	const existing = state.contacts.get(phone)
	if (existing) {
		if (existing.lid !== lid) throw conflict(`contact ${phone} already exists with lid ${existing.lid}`)
		if (name !== undefined && name !== existing.name) {
			existing.name = name
			state.changed()
		}
		return existing
	}
	if (phone === lid) throw badRequest('phone and lid must differ')
	if (state.contactByUser(lid) || state.contactsByLid.has(phone)) throw conflict('that phone or lid is already used by another contact')
	if (state.accounts.has(phone) || state.accountByLid(lid) || state.accounts.has(lid) || state.accountByLid(phone)) {
		throw conflict('that phone or lid belongs to an account')
	}
	const contact = Contact.create({ phone, lid, name }, () => state.changed())
	state.addContact(contact)
	return contact
}

// ---- server ----

/**
 * @param {http.IncomingMessage} req
 * @param {number} [limit] bytes
 * @returns {Promise<Record<string, any>>}
 */
async function readJson(req, limit = MAX_BODY_BYTES) {
	const chunks = []
	let size = 0
	for await (const chunk of req) {
		size += chunk.length
		if (size > limit) throw new SimError(413, 'too_large', `request body is larger than ${limit / 1024 / 1024} MB`)
		chunks.push(chunk)
	}
	const text = Buffer.concat(chunks).toString('utf8').trim()
	if (!text) return {}
	let body
	try {
		body = JSON.parse(text)
	} catch {
		throw badRequest('body is not valid JSON')
	}
	if (body === null || typeof body !== 'object' || Array.isArray(body)) throw badRequest('body must be a JSON object')
	return body
}

/**
 * @param {http.ServerResponse} res
 * @param {number} status
 * @param {unknown} payload
 */
function reply(res, status, payload) {
	if (res.writableEnded || res.destroyed) return
	const body = JSON.stringify(payload)
	res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
	res.end(body)
}

/**
 * @param {string} path
 * @returns {{ methods: Record<string, (ctx: Ctx, param: string) => unknown>, param: string } | undefined}
 */
function findRoute(path) {
	if (Object.hasOwn(ROUTES, path)) return { methods: ROUTES[path], param: '' }
	for (const [pattern, methods] of PARAM_ROUTES) {
		const m = pattern.exec(path)
		if (m) return { methods, param: m[1] }
	}
	return undefined
}

/**
 * @param {Simulator} sim
 * @param {http.IncomingMessage} req
 * @param {http.ServerResponse} res
 */
async function handle(sim, req, res) {
	const abort = new AbortController()
	res.on('close', () => abort.abort())
	try {
		const url = new URL(req.url ?? '/', 'http://wasim')
		const path = url.pathname.length > 1 ? url.pathname.replace(/\/+$/, '') : url.pathname
		const route = findRoute(path)
		if (!route) throw notFound(`no such endpoint: ${req.method} ${url.pathname}`)
		const handler = Object.hasOwn(route.methods, req.method ?? '') ? route.methods[/** @type {string} */ (req.method)] : undefined
		if (!handler) throw new SimError(405, 'method_not_allowed', `${req.method} is not allowed on ${path}`)
		const body = req.method === 'POST' ? await readJson(req, path === '/messages/send-batch' ? MAX_BATCH_BODY_BYTES : MAX_BODY_BYTES) : {}
		const result = await handler({ sim, body, query: url.searchParams, signal: abort.signal }, route.param)
		reply(res, 200, result ?? {})
	} catch (err) {
		if (err instanceof SimError) {
			reply(res, err.status, { error: { code: err.code, message: err.message } })
		} else {
			sim.log.error('control handler failed', { path: req.url, error: err instanceof Error ? err.stack : String(err) })
			reply(res, 500, { error: { code: 'internal', message: err instanceof Error ? err.message : String(err) } })
		}
	}
}

/**
 * Start the control API next to the simulator.
 * @param {Simulator} sim
 * @param {{ host: string, port: number }} opts
 * @returns {Promise<http.Server>}
 */
export async function startControlServer(sim, { host, port }) {
	const server = http.createServer((req, res) => void handle(sim, req, res))
	server.on('clientError', (_err, socket) => socket.destroy())
	await new Promise((resolve, reject) => {
		server.once('error', reject)
		server.listen(port, host, () => resolve(undefined))
	})
	const address = /** @type {import('node:net').AddressInfo} */ (server.address())
	const hostPart = address.family === 'IPv6' ? `[${address.address}]` : address.address
	sim.controlUrl = `http://${hostPart}:${address.port}`
	return server
}
