/**
 * The decrypted-message buffer, as whatsmeow's `EnableDecryptedEventBuffer`: the plaintext of every message Baileys
 * decrypts is stored under a hash of its ciphertext, in the same key-store transaction that stores the ratchet state
 * the decryption consumed.
 *
 * Why: a receipt held back (`receipts.ts`) makes WhatsApp deliver a message again after a crash or a close, but by
 * then its Signal keys are used up: libsignal answers "Key used already or never filled" and Baileys NACKs the
 * message, which is lost. With the buffer the redelivered ciphertext is answered from the stored plaintext instead.
 * Storing both in one transaction (one `keys.set`, one fenced DynamoDB transaction on the connector's side) means no
 * crash can leave the ratchet advanced without the plaintext that advance produced.
 *
 * The buffer is consulted before decrypting while the socket catches up after login (the messages WhatsApp delivers
 * then are the ones that may have been decrypted before), and after any decryption error. A live message is decrypted
 * first: the lookup would cost a store read per message, and libsignal stores nothing when it refuses a used key.
 * An entry is cleared once its message is durable downstream (`onReleased`): in the next decryption's transaction
 * when traffic continues, so clearing costs no extra write call, else in one batched write after a few seconds; the
 * connector's store gives every entry a TTL as the backstop, since this is message plaintext at rest.
 *
 * A decryption whose key-store calls fail because the connector's store is out (an error marked `retryable`) is
 * tried again, the whole transaction, for up to `STORE_PATIENCE_MS`: nothing of a failed transaction was stored, so
 * the ciphertext decrypts the same way once the store answers. Failing it instead would make Baileys send a retry
 * receipt, and the phone's fresh copy would reach the chatbot after the chat's later messages (or, if the ratchet
 * was rolled back under the phone, not decrypt at all: "No matching sessions"). Baileys' message mutex is held
 * meanwhile, so the session's later messages wait too, in order; none of them could be stored either.
 *
 * The repository is Baileys' own (`DEFAULT_CONNECTION_CONFIG.makeSignalRepository`), wrapped through the socket
 * config's `makeSignalRepository` seam; Baileys itself is not changed for this.
 */
import { createHash } from 'node:crypto'
import {
	DEFAULT_CONNECTION_CONFIG,
	type SignalAuthState,
	type SignalKeyStore,
	type SignalKeyStoreWithTransaction,
	type SignalRepositoryWithLIDStore
} from 'baileys'
import type { Logger } from 'pino'
import { RpcError } from './protocol.js'
import { errText } from './rpc.js'

/** the key type the plaintexts are stored under in the connector's store */
export const DECRYPTED_TYPE = 'decrypted-message'
const CLEAR_BATCH = 50
/** clears wait this long for the next decryption's transaction to carry them, before they are written alone */
const CLEAR_DELAY_MS = 5_000
/** how long a decryption waits out a store outage (beyond Baileys' own commit retries) before it fails */
export const STORE_PATIENCE_MS = 60_000
const STORE_RETRY_FIRST_MS = 500
const STORE_RETRY_MAX_MS = 5_000

/** a key-store call failed because the connector's store is out, not because of what was asked (PROTOCOL.md) */
export function storeOutage(err: unknown): boolean {
	if (!(err instanceof RpcError)) return false
	if (err.code === 'timeout') return true
	const data = err.data as { retryable?: unknown } | undefined
	return err.code === 'internal' && data?.retryable === true
}

type MakeRepository = typeof DEFAULT_CONNECTION_CONFIG.makeSignalRepository

/** `hash(kind, ciphertext)`: the id of one decryption's plaintext */
export function ciphertextId(kind: string, ciphertext: Uint8Array): string {
	return createHash('sha256').update(kind).update('\0').update(ciphertext).digest('base64url')
}

function transactional(keys: SignalKeyStore | SignalKeyStoreWithTransaction): keys is SignalKeyStoreWithTransaction {
	return typeof (keys as SignalKeyStoreWithTransaction).transaction === 'function'
}

export class DecryptBuffer {
	/** plaintexts stored since the last held receipt took them */
	private decrypted: string[] = []
	private catchingUp = true
	private readonly toClear = new Set<string>()
	private clearTimer: NodeJS.Timeout | undefined
	private keys: SignalKeyStoreWithTransaction | undefined
	hits = 0

	constructor(
		private readonly log: Logger,
		private readonly storePatienceMs = STORE_PATIENCE_MS
	) {}

	/** the socket config's `makeSignalRepository` */
	readonly makeRepository: MakeRepository = (auth: SignalAuthState, logger, pnToLid) => {
		const repo = DEFAULT_CONNECTION_CONFIG.makeSignalRepository(auth, logger, pnToLid)
		if (!transactional(auth.keys)) throw new Error('the decrypted-message buffer needs a transactional key store')
		const keys = auth.keys
		this.keys = keys
		const decryptMessage = repo.decryptMessage.bind(repo)
		const decryptGroupMessage = repo.decryptGroupMessage.bind(repo)
		const wrapped: SignalRepositoryWithLIDStore = Object.assign(repo, {
			decryptMessage: (opts: Parameters<typeof decryptMessage>[0]) =>
				this.decrypt(keys, opts.jid, ciphertextId(opts.type, opts.ciphertext), () => decryptMessage(opts)),
			decryptGroupMessage: (opts: Parameters<typeof decryptGroupMessage>[0]) =>
				this.decrypt(keys, opts.group, ciphertextId('skmsg', opts.msg), () => decryptGroupMessage(opts))
		})
		return wrapped
	}

	/** the socket finished its catch-up after login (`receivedPendingNotifications`) */
	caughtUp(): void {
		this.catchingUp = false
	}

	/** what a held receipt takes along: the plaintexts stored since the last one (Baileys decrypts a message, then
	 * receipts it, under one mutex) */
	takeDecrypted(): string[] {
		const taken = this.decrypted
		this.decrypted = []
		return taken
	}

	/** these messages are durable downstream: their plaintexts can go */
	onReleased(ids: string[]): void {
		for (const id of ids) this.toClear.add(id)
		if (this.toClear.size >= CLEAR_BATCH) void this.flush()
		else this.clearTimer ??= setTimeout(() => void this.flush(), CLEAR_DELAY_MS)
	}

	/** clear what is pending now (also at close: a socket's last releases must not wait for a timer) */
	async flush(): Promise<void> {
		clearTimeout(this.clearTimer)
		this.clearTimer = undefined
		if (!this.toClear.size || !this.keys) return
		const ids = [...this.toClear]
		this.toClear.clear()
		try {
			await this.keys.set({ [DECRYPTED_TYPE]: Object.fromEntries(ids.map(id => [id, null])) } as never)
		} catch (err) {
			// the TTL removes them later; nothing depends on this write
			this.log.debug({ count: ids.length, err: errText(err) }, 'decrypted-message buffer entries not cleared')
		}
	}

	private async decrypt(
		keys: SignalKeyStoreWithTransaction,
		txKey: string,
		id: string,
		decrypt: () => Promise<Uint8Array>
	): Promise<Uint8Array> {
		const deadline = Date.now() + this.storePatienceMs
		let delay = STORE_RETRY_FIRST_MS
		for (;;) {
			const clearing = [...this.toClear]
			try {
				return await this.once(keys, txKey, id, decrypt)
			} catch (err) {
				// the clears this transaction carried were not stored either
				for (const c of clearing) this.toClear.add(c)
				if (!storeOutage(err) || Date.now() + delay > deadline) throw err
				this.log.warn({ err: errText(err), retryInMs: delay }, 'the key store failed while decrypting; decrypting again')
				await new Promise(resolve => setTimeout(resolve, delay))
				delay = Math.min(STORE_RETRY_MAX_MS, delay * 2)
			}
		}
	}

	private async once(
		keys: SignalKeyStoreWithTransaction,
		txKey: string,
		id: string,
		decrypt: () => Promise<Uint8Array>
	): Promise<Uint8Array> {
		return keys.transaction(async () => {
			if (this.catchingUp) {
				const stored = await this.lookup(keys, id)
				if (stored) return stored
			}
			let plaintext: Uint8Array
			try {
				plaintext = await decrypt()
			} catch (err) {
				const stored = this.catchingUp ? undefined : await this.lookup(keys, id)
				if (!stored) throw err
				this.log.info({ err: errText(err) }, 'decryption refused; answered from the decrypted-message buffer')
				return stored
			}
			// in the decryption's own transaction: stored together with the ratchet state it consumed, along with the
			// clears of messages that became durable since
			const entries: Record<string, Buffer | null> = Object.fromEntries([...this.toClear].map(c => [c, null]))
			this.toClear.clear()
			entries[id] = Buffer.from(plaintext)
			await keys.set({ [DECRYPTED_TYPE]: entries } as never)
			this.decrypted.push(id)
			return plaintext
		}, txKey)
	}

	private async lookup(keys: SignalKeyStoreWithTransaction, id: string): Promise<Uint8Array | undefined> {
		const found = (await keys.get(DECRYPTED_TYPE as never, [id])) as Record<string, unknown>
		const value = found[id]
		if (value === undefined || value === null) return undefined
		this.hits++
		this.decrypted.push(id)
		return value instanceof Uint8Array ? value : Buffer.from(value as ArrayLike<number>)
	}
}
