/**
 * A JSON-lines peer over one duplex stream (PROTOCOL.md "Transport" and "Messages"): requests both ways, responses
 * routed by id, events. Every outgoing call has a timeout, every pending call fails when the stream ends, and a
 * failing handler is answered with an error and never stops the read loop.
 */
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import { classify, RpcError, type ErrorBody, type EventName } from './protocol.js'

export const DEFAULT_MAX_LINE_BYTES = 64 * 1024 * 1024
export const DEFAULT_CALL_TIMEOUT_MS = 30_000

export type Handler = (params: Record<string, unknown>, ctx: { id: string; method: string }) => unknown

/** a JSON.stringify replacer, applied while a message is written (e.g. BufferJSON.replacer for key-store values) */
export type JsonReplacer = (this: unknown, key: string, value: unknown) => unknown

export interface RpcPeerOptions {
	logger: Logger
	/** default timeout of outgoing calls (BRIDGE_RPC_TIMEOUT_MS) */
	timeoutMs?: number
	maxLineBytes?: number
	/** id prefix of outgoing requests ("b" → b-1, b-2, …) */
	idPrefix?: string
}

interface Pending {
	method: string
	resolve: (v: unknown) => void
	reject: (e: Error) => void
	timer: NodeJS.Timeout
}

export class RpcPeer {
	private readonly log: Logger
	private readonly timeoutMs: number
	private readonly maxLineBytes: number
	private readonly idPrefix: string
	private readonly handlers = new Map<string, Handler>()
	private readonly pending = new Map<string, Pending>()
	private chunks: Buffer[] = []
	private chunkBytes = 0
	private discarding = false
	private nextId = 1
	private readable = true
	private writable = true
	private readonly endCallbacks: ((reason: string) => void)[] = []
	/** set by the owner: answer every new request with this error instead of running its handler */
	refuseWith: RpcError | undefined
	/** methods answered even when refuseWith is set: a stopping bridge still waits for the connector to release the
	 * receipts of messages its sockets decrypted (see receipts.ts) */
	readonly alwaysAllowed = new Set<string>(['ping', 'receipts.release'])

	constructor(
		private readonly stream: Duplex,
		opts: RpcPeerOptions
	) {
		this.log = opts.logger
		this.timeoutMs = opts.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS
		this.maxLineBytes = opts.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES
		this.idPrefix = opts.idPrefix ?? 'b'
		stream.on('data', (chunk: Buffer | string) => this.onData(typeof chunk === 'string' ? Buffer.from(chunk) : chunk))
		stream.on('end', () => this.onReadEnd('eof'))
		stream.on('close', () => {
			this.writable = false
			this.onReadEnd('closed')
		})
		stream.on('error', (err: Error) => {
			this.log.warn({ err: err.message }, 'protocol stream error')
			this.writable = false
			this.onReadEnd('error')
		})
	}

	/** register the handler of an incoming method */
	handle(method: string, handler: Handler): void {
		this.handlers.set(method, handler)
	}

	/** called once when the read side ends (EOF, close or error) */
	onEnd(cb: (reason: string) => void): void {
		this.endCallbacks.push(cb)
	}

	get isOpen(): boolean {
		return this.readable
	}

	get pendingCount(): number {
		return this.pending.size
	}

	/**
	 * send a request and wait for its answer; rejects with RpcError (the peer's error, `timeout`, or `not_connected`).
	 * `replacer` is applied when the line is written: values are converted in the one JSON.stringify of the line
	 * instead of a stringify + parse of their own beforehand.
	 */
	call(method: string, params: object, timeoutMs = this.timeoutMs, replacer?: JsonReplacer): Promise<unknown> {
		if (!this.readable || !this.writable) {
			return Promise.reject(new RpcError('not_connected', `protocol stream closed, ${method} not sent`))
		}
		const id = `${this.idPrefix}-${this.nextId++}`
		return new Promise((resolve, reject) => {
			const timer = setTimeout(() => {
				this.pending.delete(id)
				reject(new RpcError('timeout', `${method} (${id}) got no answer within ${timeoutMs} ms`))
			}, timeoutMs)
			this.pending.set(id, { method, resolve, reject, timer })
			if (!this.send({ id, method, params }, replacer)) {
				clearTimeout(timer)
				this.pending.delete(id)
				reject(new RpcError('not_connected', `protocol stream closed, ${method} not sent`))
			}
		})
	}

	/** send an event (no answer) */
	event(event: EventName, session: string | null, data: object): boolean {
		return this.send({ event, session, data })
	}

	/** write one message as one line; false when the stream cannot be written any more */
	send(msg: object, replacer?: JsonReplacer): boolean {
		if (!this.writable) return false
		let line: string
		try {
			line = JSON.stringify(msg, replacer) + '\n'
		} catch (err) {
			this.log.error({ err: (err as Error).message }, 'message could not be serialized')
			throw err
		}
		try {
			this.stream.write(line)
			return true
		} catch (err) {
			this.log.warn({ err: (err as Error).message }, 'protocol stream write failed')
			this.writable = false
			return false
		}
	}

	/** end our write side once everything queued is flushed (or after `ms`) */
	async close(ms = 1000): Promise<void> {
		if (!this.writable) return
		this.writable = false
		await new Promise<void>(resolve => {
			const t = setTimeout(resolve, ms)
			this.stream.end(() => {
				clearTimeout(t)
				resolve()
			})
		})
	}

	// ----------------------------------------------------------------------------------------------------------

	private onData(chunk: Buffer): void {
		let start = 0
		for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, start)) {
			const piece = chunk.subarray(start, nl)
			start = nl + 1
			if (this.discarding) {
				this.discarding = false
				this.chunks = []
				this.chunkBytes = 0
				continue
			}
			if (this.chunkBytes + piece.length > this.maxLineBytes) {
				this.chunks = []
				this.chunkBytes = 0
				this.answerError(null, 'parse_error', `line longer than ${this.maxLineBytes} bytes`)
				continue
			}
			const line = this.chunks.length ? Buffer.concat([...this.chunks, piece]) : piece
			this.chunks = []
			this.chunkBytes = 0
			this.onLine(line.toString('utf8'))
		}
		if (start < chunk.length && !this.discarding) {
			const rest = chunk.subarray(start)
			if (this.chunkBytes + rest.length > this.maxLineBytes) {
				this.chunks = []
				this.chunkBytes = 0
				this.discarding = true
				this.answerError(null, 'parse_error', `line longer than ${this.maxLineBytes} bytes`)
			} else {
				// copy: the stream may reuse its buffer
				this.chunks.push(Buffer.from(rest))
				this.chunkBytes += rest.length
			}
		}
	}

	private onLine(line: string): void {
		if (line.trim() === '') return
		let msg: unknown
		try {
			msg = JSON.parse(line)
		} catch (err) {
			this.log.warn({ bytes: line.length }, 'protocol line is not JSON')
			this.answerError(null, 'parse_error', `line is not JSON: ${(err as Error).message}`)
			return
		}
		const kind = classify(msg)
		const m = msg as Record<string, unknown>
		if (kind === 'request') this.onRequest(m.id as string, m.method as string, (m.params ?? {}) as Record<string, unknown>)
		else if (kind === 'response') this.onResponse(m)
		else if (kind === 'event') this.log.debug({ event: m.event }, 'ignoring an event from the connector')
		else {
			const id = typeof m === 'object' && m !== null && typeof m.id === 'string' ? m.id : null
			this.log.warn({ id }, 'invalid protocol message')
			this.answerError(id, 'invalid_request', 'not a request, response or event')
		}
	}

	private onRequest(id: string, method: string, params: Record<string, unknown>): void {
		const handler = this.handlers.get(method)
		if (!handler) {
			this.answerError(id, 'method_not_found', `unknown method ${JSON.stringify(method)}`)
			return
		}
		if (this.refuseWith && !this.alwaysAllowed.has(method)) {
			this.send({ id, error: this.refuseWith.toBody() })
			return
		}
		let result: Promise<unknown>
		try {
			result = Promise.resolve(handler(params, { id, method }))
		} catch (err) {
			result = Promise.reject(err)
		}
		result.then(
			value => this.send({ id, result: value ?? {} }),
			(err: unknown) => {
				const body = errorBody(err)
				if (body.code === 'internal') this.log.error({ id, method, err: errText(err) }, 'request handler failed')
				else this.log.info({ id, method, code: body.code, err: body.message }, 'request failed')
				this.send({ id, error: body })
			}
		)
	}

	private onResponse(m: Record<string, unknown>): void {
		const id = m.id as string | null
		const p = id === null ? undefined : this.pending.get(id)
		if (!p) {
			if ('error' in m) this.log.warn({ id, error: m.error }, 'connector reported an error for no pending request')
			else this.log.warn({ id }, 'response for no pending request (late or unknown id)')
			return
		}
		this.pending.delete(id as string)
		clearTimeout(p.timer)
		if ('error' in m) {
			const e = m.error as ErrorBody
			p.reject(new RpcError(e.code, `${p.method}: ${e.message}`, e.data))
		} else p.resolve(m.result)
	}

	private answerError(id: string | null, code: string, message: string): void {
		this.send({ id, error: { code, message } })
	}

	private onReadEnd(reason: string): void {
		if (!this.readable) return
		this.readable = false
		for (const [id, p] of this.pending) {
			clearTimeout(p.timer)
			p.reject(new RpcError('not_connected', `protocol stream ${reason} before ${p.method} (${id}) was answered`))
		}
		this.pending.clear()
		for (const cb of this.endCallbacks) {
			try {
				cb(reason)
			} catch (err) {
				this.log.error({ err: errText(err) }, 'stream end callback failed')
			}
		}
	}
}

export function errorBody(err: unknown): ErrorBody {
	if (err instanceof RpcError) return err.toBody()
	return { code: 'internal', message: errText(err) }
}

export function errText(err: unknown): string {
	if (err instanceof Error) return err.message || err.name
	return String(err)
}
