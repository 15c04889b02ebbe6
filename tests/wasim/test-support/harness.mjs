// Test harness: a wasim process (the real CLI) and Baileys client processes that trust its root.
import { spawn, fork } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { setTimeout as delay } from 'node:timers/promises'
import { before, after } from 'node:test'

const ROOT = fileURLToPath(new URL('../', import.meta.url))
const BIN = fileURLToPath(new URL('../bin/wasim.mjs', import.meta.url))
const TRUST_ROOT = fileURLToPath(new URL('../trust-root.mjs', import.meta.url))
const CLIENT = fileURLToPath(new URL('./baileys-client.mjs', import.meta.url))

/** The wasim CLI as a child process, plus a small client for its control API. */
export class Wasim {
	/** @param {import('node:child_process').ChildProcess} proc @param {{ ws_url: string, control_url: string, root_pub: string }} ready */
	constructor(proc, ready) {
		this.proc = proc
		this.ready = ready
		this.stderr = ''
		proc.stderr?.on('data', d => (this.stderr = (this.stderr + d).slice(-20_000)))
	}

	/** @param {string[]} [args] */
	static async start(args = []) {
		const proc = spawn(process.execPath, [BIN, '--log-level', process.env.WASIM_LOG ?? 'warn', ...args], {
			cwd: ROOT,
			stdio: ['ignore', 'pipe', process.env.WASIM_LOG ? 'inherit' : 'pipe']
		})
		const lines = createInterface({ input: /** @type {import('node:stream').Readable} */ (proc.stdout) })
		const ready = await new Promise((resolve, reject) => {
			const timer = setTimeout(() => reject(new Error('wasim did not print its ready line')), 10_000)
			lines.once('line', line => {
				clearTimeout(timer)
				resolve(JSON.parse(line))
			})
			proc.once('exit', code => reject(new Error(`wasim exited early with ${code}`)))
		})
		/** @type {string[]} */
		const extra = []
		lines.on('line', line => extra.push(line))
		const wasim = new Wasim(proc, ready)
		wasim.extraStdout = extra
		return wasim
	}

	/**
	 * @param {string} method
	 * @param {string} path
	 * @param {unknown} [body]
	 * @returns {Promise<{ status: number, body: any }>}
	 */
	async request(method, path, body) {
		const res = await fetch(this.ready.control_url + path, {
			method,
			headers: body === undefined ? {} : { 'content-type': 'application/json' },
			body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body)
		})
		return { status: res.status, body: await res.json() }
	}

	/** POST that must succeed. @param {string} path @param {unknown} [body] */
	async post(path, body = {}) {
		const res = await this.request('POST', path, body)
		if (res.status !== 200) throw new Error(`POST ${path} -> ${res.status} ${JSON.stringify(res.body)}`)
		return res.body
	}

	/** GET that must succeed. @param {string} path */
	async get(path) {
		const res = await this.request('GET', path)
		if (res.status !== 200) throw new Error(`GET ${path} -> ${res.status} ${JSON.stringify(res.body)}`)
		return res.body
	}

	/** @param {string} type @param {Record<string, unknown>} [match] @param {number} [after] */
	async waitEvent(type, match, after = 0, timeout_ms = 15_000) {
		return (await this.post('/events/wait', { type, match, after, timeout_ms })).event
	}

	async lastSeq() {
		return (await this.get('/events?limit=1&after=' + Number.MAX_SAFE_INTEGER)).last_seq
	}

	/** Stop with SIGTERM and wait for exit. */
	async stop() {
		if (this.proc.exitCode !== null) return this.proc.exitCode
		const exited = new Promise(resolve => this.proc.once('exit', code => resolve(code)))
		this.proc.kill('SIGTERM')
		return exited
	}
}

/** A Baileys client in its own process (see baileys-client.mjs). */
export class Client {
	/** @type {{ name: string, data: any, at: number }[]} */
	events = []
	/** @type {Map<number, { resolve: (v: any) => void, reject: (e: Error) => void }>} */
	#pending = new Map()
	#nextId = 1
	/** @type {Set<() => void>} */
	#listeners = new Set()

	/** @param {string} rootPub */
	constructor(rootPub) {
		this.proc = fork(CLIENT, [], {
			execArgv: ['--import', TRUST_ROOT],
			env: { ...process.env, WA_SIM_ROOT_PUB: rootPub },
			stdio: ['ignore', 'ignore', 'pipe', 'ipc']
		})
		this.proc.on('message', (/** @type {any} */ msg) => {
			if (msg.kind === 'reply') {
				const p = this.#pending.get(msg.id)
				this.#pending.delete(msg.id)
				if (msg.ok) p?.resolve(msg.value)
				else p?.reject(new Error(msg.error))
			} else {
				this.events.push({ name: msg.name, data: msg.data, at: Date.now() })
				for (const l of this.#listeners) l()
			}
		})
	}

	/**
	 * Run a command in the client process. A command that never answers (a hung client, a dead process) fails after
	 * timeout ms, so a broken test fails instead of hanging the suite.
	 * @param {string} cmd @param {unknown} [args] @param {number} [timeout]
	 */
	call(cmd, args, timeout = 30_000) {
		const id = this.#nextId++
		return new Promise((resolve, reject) => {
			if (!this.proc.connected) return reject(new Error(`client command ${cmd}: the client process is gone`))
			const timer = setTimeout(() => {
				this.#pending.delete(id)
				reject(new Error(`client command ${cmd} did not answer within ${timeout} ms`))
			}, timeout)
			const settle = (/** @type {(v: any) => void} */ fn) => (/** @type {any} */ v) => {
				clearTimeout(timer)
				fn(v)
			}
			this.#pending.set(id, { resolve: settle(resolve), reject: settle(reject) })
			this.proc.send({ id, cmd, args })
		})
	}

	/**
	 * Wait for an event from the client, looking at events from index `from` on.
	 * @param {string | string[]} name one event name, or several (any of them)
	 * @param {(data: any, name: string) => boolean} [pred]
	 * @param {{ from?: number, timeout?: number }} [opts]
	 */
	waitFor(name, pred = () => true, { from = 0, timeout = 15_000 } = {}) {
		return new Promise((resolve, reject) => {
			const check = () => {
				const names = Array.isArray(name) ? name : [name]
				const hit = this.events.slice(from).find(e => names.includes(e.name) && pred(e.data, e.name))
				if (!hit) return false
				cleanup()
				resolve(hit.data)
				return true
			}
			const timer = setTimeout(() => {
				cleanup()
				reject(new Error(`timeout waiting for client event ${name}`))
			}, timeout)
			const cleanup = () => {
				clearTimeout(timer)
				this.#listeners.delete(listener)
			}
			const listener = () => void check()
			this.#listeners.add(listener)
			check()
		})
	}

	mark() {
		return this.events.length
	}

	/** Connect and wait for connection 'open'. @param {string} url @param {Record<string, unknown>} [options] */
	async connectOpen(url, options = {}) {
		const from = this.mark()
		await this.call('connect', { url, ...options })
		await this.waitFor('connection.update', u => u.connection === 'open', { from })
	}

	/** Connect and wait until it closes, returning the status code. @param {string} url */
	async connectExpectClose(url) {
		const from = this.mark()
		await this.call('connect', { url })
		return (await this.waitFor('connection.update', u => u.connection === 'close', { from })).statusCode
	}

	/** Kill the process outright (no close handshake, nothing flushed), as a crash would. */
	async kill() {
		if (this.#exited) return
		const exited = new Promise(resolve => this.proc.once('exit', resolve))
		this.proc.kill('SIGKILL')
		await exited
	}

	/** Freeze the process (SIGSTOP): it reads nothing from its socket until it is killed. */
	freeze() {
		this.proc.kill('SIGSTOP')
	}

	get #exited() {
		return this.proc.exitCode !== null || this.proc.signalCode !== null
	}

	async close() {
		if (this.#exited) return
		const exited = new Promise(resolve => this.proc.once('exit', resolve))
		await this.call('end').catch(() => {})
		this.proc.disconnect()
		await Promise.race([exited, delay(2000).then(() => this.proc.kill('SIGKILL'))])
	}
}

/**
 * Pair a new Baileys client by QR and log it in: connect, scan, expect 515, reconnect, wait for 'open'.
 * @param {Wasim} wasim
 * @param {{ phone: string, lid: string, device?: number, name?: string }} who
 */
export async function pairByQr(wasim, who) {
	const client = new Client(wasim.ready.root_pub)
	const from = client.mark()
	await client.call('connect', { url: wasim.ready.ws_url })
	const { qr } = await client.waitFor('connection.update', u => !!u.qr, { from })
	const { account } = await wasim.post('/qr/scan', { qr, ...who })
	const closed = await client.waitFor('connection.update', u => u.connection === 'close', { from })
	await client.connectOpen(wasim.ready.ws_url)
	await wasim.waitEvent('prekeys.uploaded', { account: who.phone })
	return { client, account, closedWith: closed.statusCode, qr }
}

/**
 * A test file's fixture: before its tests, a wasim, one account paired by QR, these contacts and then `setUp`;
 * after them, all stopped. The fields are set once `before` has run (a test may replace `client`). One hook, as
 * Node 20 does not wait for one root `before` to finish before it starts the next.
 * @param {{ phone: string, lid: string, device?: number, name?: string }} account
 * @param {{ phone: string, lid: string, name?: string }[]} contacts
 * @param {(fixture: { wasim: Wasim, client: Client }) => Promise<void>} [setUp]
 */
export function pairedFixture(account, contacts, setUp) {
	const fixture = { wasim: /** @type {Wasim} */ (/** @type {unknown} */ (undefined)), client: /** @type {Client} */ (/** @type {unknown} */ (undefined)) }
	before(async () => {
		fixture.wasim = await Wasim.start()
		fixture.client = (await pairByQr(fixture.wasim, account)).client
		for (const c of contacts) await fixture.wasim.post('/contacts', c)
		await setUp?.(fixture)
	})
	after(async () => {
		await fixture.client?.close()
		await fixture.wasim?.stop()
	})
	return fixture
}
