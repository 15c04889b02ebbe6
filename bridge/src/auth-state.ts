/**
 * Baileys' auth state over the protocol: a SignalKeyStore whose get/set are `keys.get`/`keys.set` calls to the
 * connector (wrapped in makeCacheableSignalKeyStore), and `creds.save` of the whole creds on every creds.update.
 * Nothing is stored here. Values cross the wire in BufferJSON form and come back byte-exact.
 *
 * One RpcAuthState belongs to one socket. Its writes are tracked so the session can wait for all of them before it
 * reports the socket closed (PROTOCOL.md: the `close` event follows every `creds.save`/`keys.set` answer); after
 * seal() every further write fails loudly, so a dead socket cannot overwrite what a newer one stored.
 */
import {
	BufferJSON,
	initAuthCreds,
	makeCacheableSignalKeyStore,
	proto,
	type AuthenticationCreds,
	type AuthenticationState,
	type CacheStore,
	type SignalDataSet,
	type SignalDataTypeMap,
	type SignalKeyStore
} from 'baileys'
import type { Logger } from 'pino'
import { RpcError, validateBridgeResult, type JsonObject } from './protocol.js'
import { errText, type JsonReplacer } from './rpc.js'

/** the part of RpcPeer this module needs (tests pass a fake); `replacer` is applied when the params are written */
export interface Caller {
	call(method: string, params: object, timeoutMs?: number, replacer?: JsonReplacer): Promise<unknown>
}

/** a value into its wire form: Buffers become {"type": "Buffer", "data": base64}, protobuf objects their JSON form */
export function encodeWire<T>(value: T): JsonObject {
	return JSON.parse(JSON.stringify(value, BufferJSON.replacer)) as JsonObject
}

/** a wire value back into Baileys' form (Buffers revived) */
export function decodeWire<T>(value: unknown): T {
	return JSON.parse(JSON.stringify(value), BufferJSON.reviver) as T
}

/** revive one key-store value as useMultiFileAuthState does */
export function reviveKey(type: string, value: unknown): unknown {
	const v = decodeWire<unknown>(value)
	if (type === 'app-state-sync-key' && v) return proto.Message.AppStateSyncKeyData.fromObject(v as Record<string, unknown>)
	return v
}

const CREDS_RETRY_BASE_MS = 500
const CREDS_RETRY_MAX_MS = 10_000

export function freshCreds(): AuthenticationCreds {
	return initAuthCreds()
}

export class RpcAuthState {
	readonly creds: AuthenticationCreds
	readonly keys: SignalKeyStore
	private readonly inflight = new Set<Promise<unknown>>()
	private sealedReason: string | undefined
	private credsLoop: Promise<void> | undefined
	private credsDirty = false
	/** set when the connector confirmed the latest creds.save; false after a failed one until a later one succeeds */
	credsStored = true
	/** the session stopped waiting for this socket's writes: a failing creds.save is not retried any more */
	private giveUp = false
	private readonly onError: (message: string) => void

	constructor(
		private readonly session: string,
		private readonly rpc: Caller,
		private readonly log: Logger,
		creds: AuthenticationCreds,
		opts: { keyCache?: CacheStore; onError?: (message: string) => void } = {}
	) {
		this.creds = creds
		this.onError = opts.onError ?? (() => {})
		const raw: SignalKeyStore = {
			get: (type, ids) => this.getKeys(type, ids),
			set: data => this.setKeys(data)
		}
		const cached = makeCacheableSignalKeyStore(raw, log.child({ component: 'key-cache' }), opts.keyCache)
		// writes are tracked from the moment Baileys issues them, including while they queue behind the cache mutex
		this.keys = {
			get: (type, ids) => cached.get(type, ids),
			set: data => this.track(Promise.resolve(cached.set(data))),
			clear: () => cached.clear?.()
		}
	}

	/** the AuthenticationState handed to makeWASocket */
	get state(): AuthenticationState {
		return { creds: this.creds, keys: this.keys }
	}

	/** creds from the connector (BufferJSON form) */
	static reviveCreds(wire: JsonObject): AuthenticationCreds {
		return decodeWire<AuthenticationCreds>(wire)
	}

	/** send the creds with creds.save and wait for the answer (used before the first connect of new creds) */
	async saveCredsNow(): Promise<void> {
		await this.track(this.rpc.call('creds.save', { session: this.session, creds: encodeWire(this.creds) }))
	}

	/**
	 * creds.update: save the FULL creds. At most one creds.save is in flight per socket; updates arriving meanwhile
	 * are coalesced into one more save that sends the creds as they are when it starts.
	 */
	saveCreds(): void {
		if (this.sealedReason) {
			this.log.warn({ reason: this.sealedReason }, 'creds.update after the socket was closed, not saved')
			return
		}
		if (this.credsLoop) {
			this.credsDirty = true
			return
		}
		this.credsLoop = this.track(this.runCredsLoop()).finally(() => {
			this.credsLoop = undefined
		})
	}

	/**
	 * Until the creds are stored: a registration (pairing) is only complete once its creds are, and a socket that
	 * restarts from creds older than the ones it ran with can come back as a fresh QR while the phone still lists the
	 * device. So a failed save is retried with backoff (the connector answers an error for a store outage or
	 * throttling) for as long as the socket lives and, after it closed, until `drain` gives up on it; each failure is
	 * reported once as a session.error. `credsStored` tells the session whether the last creds it had reached the
	 * store.
	 */
	private async runCredsLoop(): Promise<void> {
		// let Baileys' own creds.update listener merge the partial update first
		await Promise.resolve()
		let failures = 0
		do {
			this.credsDirty = false
			try {
				await this.rpc.call('creds.save', { session: this.session, creds: encodeWire(this.creds) })
				this.credsStored = true
				if (failures) this.log.info({ failures }, 'creds saved after failures')
				else this.log.debug('creds saved')
				failures = 0
			} catch (err) {
				this.credsStored = false
				failures++
				this.credsDirty = true
				const message = `creds.save failed (attempt ${failures}, retried): ${errText(err)}`
				this.log.error({ err: errText(err), attempt: failures }, 'creds.save failed; retrying')
				if (failures === 1) this.onError(message)
				if (this.giveUp) return
				await new Promise(resolve => setTimeout(resolve, Math.min(CREDS_RETRY_MAX_MS, CREDS_RETRY_BASE_MS * 2 ** (failures - 1))))
			}
		} while (this.credsDirty && !this.giveUp)
	}

	private async getKeys<T extends keyof SignalDataTypeMap>(type: T, ids: string[]): Promise<{ [id: string]: SignalDataTypeMap[T] }> {
		if (this.sealedReason) throw new RpcError('not_connected', `key store of ${this.session} is closed (${this.sealedReason})`)
		if (ids.length === 0) return {}
		const result = validateBridgeResult('keys.get', await this.rpc.call('keys.get', { session: this.session, type, ids }))
		const out: { [id: string]: SignalDataTypeMap[T] } = {}
		for (const id of ids) {
			const v = result.values[id]
			if (v !== undefined && v !== null) out[id] = reviveKey(type, v) as SignalDataTypeMap[T]
		}
		this.log.trace({ type, asked: ids.length, found: Object.keys(out).length }, 'keys.get')
		return out
	}

	private async setKeys(data: SignalDataSet): Promise<void> {
		if (this.sealedReason) throw new RpcError('not_connected', `key store of ${this.session} is closed (${this.sealedReason})`)
		const wire: Record<string, Record<string, unknown>> = {}
		let count = 0
		for (const [type, entries] of Object.entries(data)) {
			if (!entries) continue
			const out: Record<string, unknown> = {}
			let n = 0
			for (const [id, value] of Object.entries(entries)) {
				// JSON drops undefined: a delete must stay an explicit null
				out[id] = value === undefined || value === null ? null : value
				n++
			}
			if (n) wire[type] = out
			count += n
		}
		if (count === 0) return
		this.log.trace({ types: Object.keys(wire), count }, 'keys.set')
		// The values go out in BufferJSON form, the same text encodeWire gives, converted by the replacer as the line is
		// written: one JSON.stringify per keys.set instead of a stringify + parse per value and a stringify of the line.
		const answer = await this.rpc.call('keys.set', { session: this.session, data: wire }, undefined, BufferJSON.replacer)
		validateBridgeResult('keys.set', answer)
	}

	private track<T>(p: Promise<T>): Promise<T> {
		const settled = p.then(
			() => undefined,
			() => undefined
		)
		this.inflight.add(settled)
		void settled.then(() => this.inflight.delete(settled))
		return p
	}

	/** number of creds.save/keys.set calls not yet answered */
	get pendingWrites(): number {
		return this.inflight.size
	}

	/** wait until every creds.save/keys.set issued so far (and any issued while waiting) has settled; a creds.save
	 * that keeps failing is retried until then */
	async drain(maxMs: number): Promise<boolean> {
		const deadline = Date.now() + maxMs
		while (this.inflight.size) {
			const left = deadline - Date.now()
			if (left <= 0) {
				this.giveUp = true
				return false
			}
			let timer: NodeJS.Timeout | undefined
			await Promise.race([
				Promise.allSettled([...this.inflight]),
				new Promise(resolve => {
					timer = setTimeout(resolve, left)
				})
			])
			clearTimeout(timer)
		}
		return true
	}

	/** refuse every further read and write (the socket is gone) */
	seal(reason: string): void {
		this.sealedReason ??= reason
	}
}
