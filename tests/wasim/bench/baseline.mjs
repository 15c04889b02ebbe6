// The bare-Baileys baseline for `make bench`: one Node process holding N real Baileys sockets, configured
// like the bridge configures its own (bridge/src/session.ts), linked to wasim and measured with the same shapes the
// Python harness uses against wa-relay. It does not start wasim; the caller does and passes its urls.
//
//   WA_SIM_ROOT_PUB=<hex> node [--expose-gc] --import <abs>/tests/wasim/trust-root.mjs tests/wasim/bench/baseline.mjs \
//     --control-url URL --ws-url URL --mode throughput|latency|idle|boot --store memory|file --sessions N \
//     [--messages M] [--contacts K] [--samples S] [--settle-s X] [--stagger-s X] [--state-dir DIR]
//     [--phone-prefix 1777000] [--contact-prefix 1778000] [--link-concurrency 4] [--timeout-s 120] --out FILE.json
//
// The result is one JSON object written to --out; stdout gets at most a one-line summary, stderr a one-line error
// (exit status 1) on failure. Account LIDs are the phone with its first digit replaced by 9, contact LIDs by 8.
import makeWASocket, { initAuthCreds, makeCacheableSignalKeyStore, useMultiFileAuthState } from 'baileys'
import { readFileSync, writeFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { createRequire } from 'node:module'
import { setTimeout as delay } from 'node:timers/promises'

// libsignal dumps sessions (key material) through console.*; nothing may print keys, so console is silenced and
// this program writes its own lines straight to the streams.
console.log = console.info = console.debug = console.warn = console.error = () => {}
const errorLine = (/** @type {string} */ line) => process.stderr.write(`baseline: ${line}\n`)
// Baileys leaves rejections behind when sockets close under it; they must not kill (or print from) the run.
// Our own failures are caught in main().
process.on('unhandledRejection', () => {})

const gc = /** @type {(() => void) | undefined} */ (globalThis.gc)
/** RSS/heap right after the imports, before any socket exists (the idle-memory floor). */
const memBefore = sampleMemory()

// ---- options ----

const { values: opt } = parseArgs({
	options: {
		'control-url': { type: 'string' },
		'ws-url': { type: 'string' },
		mode: { type: 'string' },
		store: { type: 'string', default: 'memory' },
		sessions: { type: 'string', default: '1' },
		messages: { type: 'string', default: '2000' },
		contacts: { type: 'string', default: '10' },
		samples: { type: 'string', default: '200' },
		'settle-s': { type: 'string', default: '10' },
		'stagger-s': { type: 'string', default: '0' },
		'state-dir': { type: 'string' },
		'phone-prefix': { type: 'string', default: '1777000' },
		'contact-prefix': { type: 'string', default: '1778000' },
		'link-concurrency': { type: 'string', default: '4' },
		'timeout-s': { type: 'string', default: '120' },
		out: { type: 'string' }
	},
	strict: true
})

/** @param {string} name @param {number} min */
function intOpt(name, min) {
	const v = Number(opt[/** @type {keyof typeof opt} */ (name)])
	if (!Number.isInteger(v) || v < min) usage(`--${name} must be an integer >= ${min}`)
	return v
}
/** @param {string} name */
function numOpt(name) {
	const v = Number(opt[/** @type {keyof typeof opt} */ (name)])
	if (!Number.isFinite(v) || v < 0) usage(`--${name} must be a number >= 0`)
	return v
}
/** @param {string} message @returns {never} */
function usage(message) {
	errorLine(`usage error: ${message}`)
	process.exit(2)
}

const MODES = ['throughput', 'latency', 'idle', 'boot']
if (!opt['control-url'] || !opt['ws-url'] || !opt.out) usage('--control-url, --ws-url and --out are required')
if (!MODES.includes(opt.mode ?? '')) usage(`--mode must be one of ${MODES.join(', ')}`)
if (opt.store !== 'memory' && opt.store !== 'file') usage('--store must be memory or file')
for (const p of ['phone-prefix', 'contact-prefix']) {
	if (!/^[1-9]\d{0,9}$/.test(opt[/** @type {'phone-prefix'} */ (p)] ?? '')) usage(`--${p} must be digits`)
}
const MODE = /** @type {'throughput'|'latency'|'idle'|'boot'} */ (opt.mode)
// boot measures reopening stored sessions, which only the file store has.
const STORE = MODE === 'boot' ? 'file' : /** @type {'memory'|'file'} */ (opt.store)
const CONTROL = /** @type {string} */ (opt['control-url']).replace(/\/+$/, '')
const WS_URL = /** @type {string} */ (opt['ws-url'])
const SESSIONS = MODE === 'latency' ? 1 : intOpt('sessions', 1)
// latency: the counted samples (warm-up excluded)
const MESSAGES = MODE === 'throughput' ? intOpt('messages', 1) : MODE === 'latency' ? intOpt('samples', 1) : 0
const CONTACTS = MODE === 'throughput' ? intOpt('contacts', 1) : MODE === 'latency' ? 1 : 0
const SAMPLES = intOpt('samples', 1)
const SETTLE_S = numOpt('settle-s')
const STAGGER_S = numOpt('stagger-s')
const LINK_CONCURRENCY = intOpt('link-concurrency', 1)
const TIMEOUT_MS = numOpt('timeout-s') * 1000
/** Linking one session (QR, scan, 515 restart, open) must not take longer than this. */
const LINK_TIMEOUT_MS = 60_000
/** The simulator takes at most this many messages per send-batch call. */
const MAX_BATCH = 5000
const LATENCY_WARMUP = 5

const require = createRequire(import.meta.url)
const BAILEYS_VERSION = JSON.parse(readFileSync(require.resolve('baileys/package.json'), 'utf8')).version

// ---- the simulator's control API ----

/**
 * @param {string} path
 * @param {unknown} body
 * @returns {Promise<any>}
 */
async function post(path, body) {
	const res = await fetch(CONTROL + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
	const json = /** @type {any} */ (await res.json().catch(() => ({})))
	if (!res.ok) throw new HttpError(res.status, `POST ${path} -> ${res.status} ${json?.error?.code ?? ''}: ${json?.error?.message ?? ''}`)
	return json
}

class HttpError extends Error {
	/** @param {number} status @param {string} message */
	constructor(status, message) {
		super(message)
		this.status = status
	}
}

/** The current last event seq, so waits only look at what happens next. */
async function lastSeq() {
	const res = await fetch(`${CONTROL}/events?limit=1&after=${Number.MAX_SAFE_INTEGER}`)
	return /** @type {any} */ (await res.json()).last_seq
}

/** @param {string} type @param {Record<string, unknown>} match @param {number} after @param {number} [timeoutMs] */
async function waitEvent(type, match, after, timeoutMs = 30_000) {
	return (await post('/events/wait', { type, match, after, timeout_ms: timeoutMs })).event
}

// ---- Baileys sessions ----

/** A logger that satisfies Baileys' ILogger and says nothing (the bridge's is pino at a quiet level). */
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

/** Map-based CacheStore with a TTL, like the bridge's msgRetryCounterCache that outlives a socket. */
class TtlCache {
	/** @type {Map<string, { value: unknown, expires: number }>} */
	map = new Map()
	/** @param {string} key */
	get(key) {
		const e = this.map.get(key)
		if (!e || e.expires <= Date.now()) return undefined
		return e.value
	}
	/** @param {string} key @param {unknown} value */
	set(key, value) {
		this.map.set(key, { value, expires: Date.now() + 3_600_000 })
	}
	/** @param {string} key */
	del(key) {
		this.map.delete(key)
	}
	flushAll() {
		this.map.clear()
	}
}

/** @typedef {{ get: (type: string, ids: string[]) => Promise<Record<string, any>>, set: (data: Record<string, Record<string, any>>) => Promise<void> }} RawStore */

/** Key writes not yet finished, across all sessions (the "keys persisted" point of the throughput run). */
const pendingWrites = new Set()
/** @param {Promise<unknown>} p */
function trackWrite(p) {
	pendingWrites.add(p)
	p.finally(() => pendingWrites.delete(p)).catch(() => {})
	return p
}
async function writesSettled() {
	while (pendingWrites.size) await Promise.allSettled([...pendingWrites])
}

/** In-memory keys: a plain object per type, like test-support/baileys-client.mjs. @returns {RawStore} */
function memoryKeyStore() {
	/** @type {Record<string, Record<string, any>>} */
	const keys = {}
	return {
		get: async (type, ids) => Object.fromEntries(ids.filter(id => keys[type]?.[id] != null).map(id => [id, keys[type][id]])),
		set: async data => {
			for (const type in data) {
				keys[type] ??= {}
				for (const id in data[type]) {
					if (data[type][id] == null) delete keys[type][id]
					else keys[type][id] = data[type][id]
				}
			}
		}
	}
}

/** @type {string | undefined} created (and removed at exit) when --state-dir is not given */
let ownStateDir
function stateDir() {
	if (opt['state-dir']) {
		mkdirSync(opt['state-dir'], { recursive: true })
		return opt['state-dir']
	}
	ownStateDir ??= mkdtempSync(join(tmpdir(), 'wasim-baseline-'))
	return ownStateDir
}

/**
 * @typedef {object} Handlers what a run does with a session's events
 * @property {(session: Session, messages: import('baileys').WAMessage[]) => void} [onNotify]
 */

class Session {
	/** @type {ReturnType<typeof makeWASocket> | undefined} */
	sock
	/** @type {import('baileys').AuthenticationState | undefined} */
	auth
	/** @type {(() => Promise<void>) | undefined} */
	saveCreds
	retryCache = new TtlCache()
	/** @type {Handlers} */
	handlers = {}

	/** @param {number} index */
	constructor(index) {
		this.index = index
		this.phone = `${opt['phone-prefix']}${String(index).padStart(4, '0')}`
		this.lid = '9' + this.phone.slice(1)
		this.jid = `${this.phone}@s.whatsapp.net`
	}

	/** Load (or create) this session's auth state: fresh in memory, or Baileys' own multi-file store. */
	async loadAuth() {
		/** @type {RawStore} */
		let raw
		if (STORE === 'file') {
			const dir = join(stateDir(), this.phone)
			const { state, saveCreds } = await useMultiFileAuthState(dir)
			this.saveCreds = saveCreds
			raw = /** @type {RawStore} */ (/** @type {unknown} */ (state.keys))
			this.creds = state.creds
		} else {
			raw = memoryKeyStore()
			this.creds = this.creds ?? initAuthCreds()
			this.saveCreds = async () => {}
		}
		/** @type {RawStore} writes are tracked from the moment Baileys issues them */
		const tracked = { get: (type, ids) => raw.get(type, ids), set: data => trackWrite(Promise.resolve(raw.set(data))) }
		this.auth = { creds: /** @type {any} */ (this.creds), keys: makeCacheableSignalKeyStore(/** @type {any} */ (tracked), silent) }
	}

	/** A socket configured like the bridge's (bridge/src/session.ts socketConfig). */
	#socket() {
		const sock = makeWASocket({
			waWebSocketUrl: WS_URL,
			auth: /** @type {import('baileys').AuthenticationState} */ (this.auth),
			logger: /** @type {any} */ (silent),
			markOnlineOnConnect: false,
			syncFullHistory: false,
			msgRetryCounterCache: this.retryCache,
			// The bridge asks the connector; the baseline keeps no message store, so retries find nothing, as with an
			// empty store.
			getMessage: async () => undefined
		})
		this.sock = sock
		sock.ev.on('creds.update', () => {
			// useMultiFileAuthState's creds object is the one Baileys mutates; saveCreds writes it (like the bridge's
			// creds.save on every update).
			void trackWrite(/** @type {() => Promise<void>} */ (this.saveCreds)())
		})
		sock.ev.on('messages.upsert', ({ messages, type }) => {
			if (type === 'notify' && sock === this.sock) this.handlers.onNotify?.(this, messages)
		})
		return sock
	}

	/**
	 * Link a fresh account by QR: open, scan the first QR, follow the 515 restart after pair-success with a new
	 * socket over the saved creds, until `open`.
	 */
	async link() {
		await this.loadAuth()
		let scanned = false
		await this.#openLoop(async qr => {
			if (scanned) return
			scanned = true
			await post('/qr/scan', { qr, phone: this.phone, lid: this.lid })
		})
	}

	/** Reopen from the stored creds (boot): re-read the store like a restarted process would. */
	async reopen() {
		await this.loadAuth()
		await this.#openLoop(async () => {
			throw new Error(`session ${this.phone} asked for a QR on reopen: its creds were not stored`)
		})
	}

	/**
	 * Open sockets until one reaches `open`: 515 (restart required, after pairing) opens a new one.
	 * @param {(qr: string) => Promise<void>} onQr
	 */
	#openLoop(onQr) {
		return new Promise((resolve, reject) => {
			const timer = setTimeout(() => fail(new Error(`session ${this.phone} did not open within ${LINK_TIMEOUT_MS / 1000} s`)), LINK_TIMEOUT_MS)
			let done = false
			const fail = (/** @type {Error} */ err) => {
				if (done) return
				done = true
				clearTimeout(timer)
				this.sock?.end(undefined)
				reject(err)
			}
			const start = () => {
				const sock = this.#socket()
				sock.ev.on('connection.update', update => {
					if (done || sock !== this.sock) return
					if (update.qr) onQr(update.qr).catch(fail)
					if (update.connection === 'open') {
						done = true
						clearTimeout(timer)
						resolve(undefined)
					} else if (update.connection === 'close') {
						const code = /** @type {any} */ (update.lastDisconnect?.error)?.output?.statusCode
						if (code === 515) start()
						else fail(new Error(`session ${this.phone} closed with ${code ?? 'no code'} while opening`))
					}
				})
			}
			start()
		})
	}

	end() {
		const sock = this.sock
		this.sock = undefined
		sock?.end(undefined)
	}
}

/**
 * Run `fn` over items with at most `limit` at a time.
 * @template T @param {T[]} items @param {number} limit @param {(item: T) => Promise<void>} fn
 */
async function pool(items, limit, fn) {
	let next = 0
	const worker = async () => {
		while (next < items.length) await fn(items[next++])
	}
	await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
}

/** Create and link N sessions, a few at a time. @returns {Promise<{ sessions: Session[], linkS: number }>} */
async function linkSessions() {
	const sessions = Array.from({ length: SESSIONS }, (_, i) => new Session(i))
	const t0 = performance.now()
	await pool(sessions, LINK_CONCURRENCY, s => s.link())
	return { sessions, linkS: (performance.now() - t0) / 1000 }
}

/** @param {import('baileys').WAMessage} m */
const textOf = m => m.message?.conversation ?? m.message?.extendedTextMessage?.text ?? null

// ---- modes ----

/**
 * Contacts 1778…: created through the control API (idempotent per phone).
 * @param {number} n
 */
async function createContacts(n) {
	const contacts = []
	for (let i = 0; i < n; i++) {
		const phone = `${opt['contact-prefix']}${String(i).padStart(4, '0')}`
		await post('/contacts', { phone, lid: '8' + phone.slice(1), name: `Bench ${i}` })
		contacts.push(phone)
	}
	return contacts
}

/**
 * Deliver these messages through /messages/send-batch and resolve when every text arrived as a notify upsert.
 * @param {Session[]} sessions
 * @param {{ from: string, to: string, text: string }[]} messages texts must be unique
 * @returns {Promise<{ firstSendMs: number, lastReceivedMs: number, received: number, sendS: number }>}
 */
async function deliver(sessions, messages) {
	const expected = new Set(messages.map(m => m.text))
	let lastReceivedMs = 0
	let received = 0
	/** @type {() => void} */
	let allIn = () => {}
	const arrived = new Promise(resolve => (allIn = () => resolve(undefined)))
	for (const s of sessions) {
		s.handlers.onNotify = (_s, msgs) => {
			for (const m of msgs) {
				const text = textOf(m)
				// A text counts once: a redelivery (retry) must not inflate the figure.
				if (text === null || !expected.delete(text)) continue
				received++
				lastReceivedMs = Date.now()
				if (!expected.size) {
					cpuAtLast = process.cpuUsage()
					allIn()
				}
			}
		}
	}
	const firstSendMs = Date.now()
	const cpuBefore = process.cpuUsage()
	let cpuAtLast = cpuBefore
	const sending = (async () => {
		for (let i = 0; i < messages.length; i += MAX_BATCH) await post('/messages/send-batch', { messages: messages.slice(i, i + MAX_BATCH) })
		return (Date.now() - firstSendMs) / 1000
	})()
	let timer
	const timeout = new Promise((_, reject) => {
		timer = setTimeout(
			() => reject(new Error(`only ${received} of ${messages.length} messages arrived within ${TIMEOUT_MS / 1000} s`)),
			TIMEOUT_MS
		)
	})
	try {
		await Promise.race([Promise.all([arrived, sending]), timeout])
	} finally {
		clearTimeout(timer)
	}
	for (const s of sessions) s.handlers.onNotify = undefined
	// This process's CPU (user + system) from the first send to the last message: what bare Baileys costs per
	// message, beside the relay's connector and bridge processes.
	const cpuS = (cpuAtLast.user - cpuBefore.user + cpuAtLast.system - cpuBefore.system) / 1e6
	return { firstSendMs, lastReceivedMs, received, sendS: await sending, cpuS }
}

/**
 * Inbound throughput: M messages round-robin over every (session, contact) pair, after a warm-up message per
 * pair so each Signal session exists (the first message of a pair is a pkmsg carrying a prekey).
 * @param {Session[]} sessions
 */
async function throughput(sessions) {
	const contacts = await createContacts(CONTACTS)
	const run = `${Date.now().toString(36)}${process.pid}`
	const pairs = sessions.length * contacts.length
	const pairOf = (/** @type {number} */ i) => ({ from: contacts[Math.floor((i % pairs) / sessions.length)], to: sessions[i % sessions.length].phone })
	const warm = Array.from({ length: pairs }, (_, i) => ({ ...pairOf(i), text: `warmup ${run} ${i}` }))
	await deliver(sessions, warm)
	await writesSettled()

	const messages = Array.from({ length: MESSAGES }, (_, i) => ({ ...pairOf(i), text: `bench ${run} ${i}` }))
	const seq = await lastSeq()
	const r = await deliver(sessions, messages)
	// The point where every key write Baileys issued while receiving has finished (files written for the file
	// store; immediate for memory). Baileys itself emits messages.upsert after committing its key transaction, so
	// for useMultiFileAuthState this mostly equals last_received_ms; it is reported so both notions are visible.
	await writesSettled()
	const persistedMs = Date.now()
	const elapsedS = (r.lastReceivedMs - r.firstSendMs) / 1000
	const sim = await simSendSpan(seq, messages.length)
	const persistedS = (persistedMs - r.firstSendMs) / 1000
	return {
		warmup: true,
		warmup_messages: warm.length,
		first_send_ms: r.firstSendMs,
		last_received_ms: r.lastReceivedMs,
		elapsed_s: round(elapsedS, 3),
		received: r.received,
		msg_per_s: round(r.received / elapsedS, 1),
		send_s: round(r.sendS, 3),
		cpu_s: round(r.cpuS, 3),
		cpu_ms_per_msg: round((r.cpuS * 1000) / Math.max(r.received, 1), 3),
		keys_persisted_ms: persistedMs,
		persisted_elapsed_s: round(persistedS, 3),
		persisted_msg_per_s: round(r.received / persistedS, 1),
		// The simulator's own pace (its message.incoming_sent stamps): evidence that it is not what is measured.
		sim_send_s: sim && round(sim.spanS, 3),
		sim_msg_per_s: sim && round(messages.length / Math.max(sim.spanS, 0.001), 1)
	}
}

/**
 * How long the simulator took from writing the first to the last of these messages, from its event log.
 * @param {number} after seq before the batch @param {number} count
 * @returns {Promise<{ spanS: number } | null>} null if the log no longer holds them all
 */
async function simSendSpan(after, count) {
	const res = await fetch(`${CONTROL}/events?type=message.incoming_sent&limit=20000&after=${after}`)
	const events = /** @type {any} */ (await res.json()).events
	if (events.length < count) return null
	return { spanS: (events[count - 1].at - events[0].at) / 1000 }
}

/**
 * Reply latency: the session echoes every text; S sequential messages, each timed from the simulator's
 * message.incoming_sent to its message.outgoing for the echo (both stamped by wasim's clock).
 * @param {Session[]} sessions
 */
async function latency(sessions) {
	const [session] = sessions
	const [contact] = await createContacts(1)
	session.handlers.onNotify = (s, msgs) => {
		for (const m of msgs) {
			const text = textOf(m)
			if (m.key.fromMe || text === null || !m.key.remoteJid) continue
			s.sock?.sendMessage(m.key.remoteJid, { text: 'echo:' + text }).catch(() => {})
		}
	}
	const run = `${Date.now().toString(36)}${process.pid}`
	/** @type {number[]} */
	const latencies = []
	for (let i = 0; i < LATENCY_WARMUP + SAMPLES; i++) {
		const text = `lat ${run} ${i}`
		const after = await lastSeq()
		const { id } = await post('/messages/send', { from: contact, to: session.phone, text })
		const timeoutMs = Math.min(TIMEOUT_MS, 300_000)
		const out = await waitEvent('message.outgoing', { account: session.phone, text: 'echo:' + text }, after, timeoutMs)
		const sent = await waitEvent('message.incoming_sent', { id }, after, timeoutMs)
		if (i >= LATENCY_WARMUP) latencies.push(out.at - sent.at)
	}
	session.handlers.onNotify = undefined
	const sorted = [...latencies].sort((a, b) => a - b)
	return {
		warmup: true,
		warmup_messages: LATENCY_WARMUP,
		samples: SAMPLES,
		latencies_ms: latencies,
		p50_ms: percentile(sorted, 50),
		p95_ms: percentile(sorted, 95),
		p99_ms: percentile(sorted, 99),
		mean_ms: round(latencies.reduce((a, b) => a + b, 0) / latencies.length, 2),
		max_ms: sorted.at(-1)
	}
}

/** Memory per idle linked session: RSS after N sessions opened and settled, minus RSS before any socket. */
async function idle() {
	await delay(SETTLE_S * 1000)
	const after = sampleMemory()
	return {
		warmup: false,
		settle_s: SETTLE_S,
		gc: !!gc,
		rss_before_bytes: memBefore.rss,
		rss_after_bytes: after.rss,
		rss_per_session_bytes: Math.round((after.rss - memBefore.rss) / SESSIONS),
		heap_used_before_bytes: memBefore.heapUsed,
		heap_used_after_bytes: after.heapUsed,
		heap_used_per_session_bytes: Math.round((after.heapUsed - memBefore.heapUsed) / SESSIONS)
	}
}

/**
 * Boot: close every linked session, then reopen all N from the stored creds (re-read from disk), starting one
 * every --stagger-s, and time until all are open.
 * @param {Session[]} sessions
 */
async function boot(sessions) {
	for (const s of sessions) s.end()
	await writesSettled()
	// Let the simulator see the closes, so the reopen is a clean login rather than a conflict.
	await delay(500)
	/** @type {number[]} */
	const openS = []
	const t0 = performance.now()
	const starts = sessions.map(async (s, i) => {
		if (STAGGER_S) await delay(i * STAGGER_S * 1000)
		await s.reopen()
		openS.push((performance.now() - t0) / 1000)
	})
	await Promise.all(starts)
	const sorted = openS.sort((a, b) => a - b)
	return {
		warmup: false,
		stagger_s: STAGGER_S,
		boot_s: round(sorted.at(-1) ?? 0, 3),
		first_open_s: round(sorted[0] ?? 0, 3),
		p50_open_s: round(percentile(sorted, 50), 3)
	}
}

// ---- helpers ----

function sampleMemory() {
	// Twice: a full GC can free objects whose finalisers release more.
	gc?.()
	gc?.()
	const { rss, heapUsed } = process.memoryUsage()
	return { rss, heapUsed }
}

/** Nearest-rank percentile of an ascending list. @param {number[]} sorted @param {number} p */
function percentile(sorted, p) {
	if (!sorted.length) return 0
	return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]
}

/** @param {number} v @param {number} digits */
function round(v, digits) {
	const f = 10 ** digits
	return Math.round(v * f) / f
}

// ---- main ----

async function main() {
	const { sessions, linkS } = await linkSessions()
	/** @type {Record<string, unknown>} */
	let fields
	if (MODE === 'throughput') fields = await throughput(sessions)
	else if (MODE === 'latency') fields = await latency(sessions)
	else if (MODE === 'idle') fields = await idle()
	else fields = await boot(sessions)
	const result = {
		tool: 'baileys',
		baileys_version: BAILEYS_VERSION,
		node: process.version,
		mode: MODE,
		store: STORE,
		sessions: SESSIONS,
		contacts: CONTACTS,
		messages: MESSAGES,
		warmup: false,
		...fields,
		link_s: round(linkS, 3)
	}
	writeFileSync(/** @type {string} */ (opt.out), JSON.stringify(result, null, 2) + '\n')
	for (const s of sessions) s.end()
	await writesSettled()
	const summary =
		MODE === 'throughput' ? `${fields.received} msgs, ${fields.msg_per_s} msg/s` :
		MODE === 'latency' ? `p50 ${fields.p50_ms} ms, p95 ${fields.p95_ms} ms, p99 ${fields.p99_ms} ms` :
		MODE === 'idle' ? `${Math.round(/** @type {number} */ (fields.rss_per_session_bytes) / 1024)} KiB RSS per session` :
		`all open in ${fields.boot_s} s`
	process.stdout.write(`baseline ${MODE} store=${STORE} sessions=${SESSIONS}: ${summary}\n`)
}

main().then(
	() => cleanupAndExit(0),
	err => {
		errorLine(`error: ${err instanceof Error ? err.message : String(err)}`)
		cleanupAndExit(1)
	}
)

/** @param {number} code */
function cleanupAndExit(code) {
	if (ownStateDir) rmSync(ownStateDir, { recursive: true, force: true })
	// Baileys keeps timers (keep-alives, caches) alive; the run is over.
	process.exit(code)
}
