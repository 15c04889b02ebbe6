// A simulated contact: the phone of someone who chats with the accounts. Each contact owns a libsignal
// identity, a signed prekey, one-time prekeys it hands out through the server, and its sessions with
// the accounts' devices. It encrypts texts to an account and decrypts what Baileys sends it.
import libsignal from 'libsignal'
import { KEY_BUNDLE_TYPE, encodeBigEndian, unpadRandomMax16, proto } from 'baileys'
import { pnJid, lidJid, pooledRandom } from './wire.mjs'

const { keyhelper, SessionBuilder, SessionCipher, ProtocolAddress, SessionRecord } = libsignal

const SIGNED_PREKEY_ID = 1
/**
 * How many received message ids a contact remembers (per contact, all accounts together) to drop duplicates, as a
 * phone's message store does. Older ids are forgotten first, so memory stays bounded under load.
 */
export const MAX_RECEIVED = 10_000

/** Wire keys are 32 bytes; libsignal wants them with the 0x05 type prefix. */
export const withKeyType = (/** @type {Uint8Array} */ key) =>
	key.length === 33 ? Buffer.from(key) : Buffer.concat([KEY_BUNDLE_TYPE, key])
/** libsignal keys carry the 0x05 prefix; the wire omits it. */
const withoutKeyType = (/** @type {Uint8Array} */ key) => Buffer.from(key.length === 33 ? key.subarray(1) : key)

/**
 * The Signal address under which a contact keeps its session with an account's companion device.
 * @param {{ phone: string, device: number }} account
 */
const addressOf = account => new ProtocolAddress(account.phone, account.device)

/**
 * Baileys' encodeWAMessage (protobuf + 1-16 bytes of random padding, each byte the pad length), with the random
 * byte from the pool rather than a crypto call per message.
 * @param {proto.IMessage} message
 */
function encodeWAMessage(message) {
	const bytes = proto.Message.encode(message).finish()
	const padLength = (pooledRandom(1)[0] & 0x0f) + 1
	return Buffer.concat([bytes, Buffer.alloc(padLength, padLength)])
}

export class Contact {
	/** Serialises Signal operations: libsignal's store calls are async and must not interleave. */
	#lock = Promise.resolve()
	/**
	 * Live SessionRecords by address, so each encrypt/decrypt does not deserialise the record again (the main
	 * per-message cost under load). `sessions` keeps the serialised form written by every storeSession; a failed
	 * operation drops its live records (libsignal may have half-mutated them), so the next load reads the last
	 * stored state, exactly as without the cache.
	 * @type {Map<string, any>}
	 */
	#live = new Map()
	/**
	 * What this phone received from the accounts, by `${account} ${id}`, oldest first (not persisted).
	 * @type {Map<string, { account: string, id: string, text: string | null, at: number, count: number }>}
	 */
	#received = new Map()
	/** The jid each received message was addressed to (phone number or LID): a read receipt comes from it. @type {Map<string, string>} */
	#addressedTo = new Map()
	/** Messages this phone marked read, by `${account} ${id}`. @type {Set<string>} */
	#read = new Set()
	/** @type {Map<string, number>} account phone -> how many of its next messages to treat as undecryptable */
	#failNext = new Map()
	/**
	 * Retry receipts this phone sent for messages it could not decrypt, by `${account} ${id}` (see retries.mjs).
	 * @type {Map<string, { count: number, timer?: NodeJS.Timeout }>}
	 */
	retryAsks = new Map()

	/**
	 * @param {object} fields
	 * @param {string} fields.phone
	 * @param {string} fields.lid
	 * @param {string | null} fields.name
	 * @param {{ pubKey: Buffer, privKey: Buffer }} fields.identity
	 * @param {number} fields.registrationId
	 * @param {{ keyId: number, keyPair: { pubKey: Buffer, privKey: Buffer }, signature: Buffer }} fields.signedPreKey
	 * @param {Map<number, { pubKey: Buffer, privKey: Buffer }>} fields.preKeys
	 * @param {number} fields.nextPreKeyId
	 * @param {Map<string, object>} fields.sessions serialised SessionRecords by address
	 * @param {() => void} [onChange] called after any state change (for persistence)
	 */
	constructor(fields, onChange = () => {}) {
		Object.assign(this, fields)
		this.onChange = onChange
		const self = this
		/** libsignal storage interface, backed by this contact's fields. */
		this.store = {
			loadSession: async (/** @type {string} */ id) => {
				let record = self.#live.get(id)
				if (!record && self.sessions.has(id)) {
					record = SessionRecord.deserialize(self.sessions.get(id))
					self.#live.set(id, record)
				}
				return record
			},
			storeSession: async (/** @type {string} */ id, /** @type {any} */ record) => {
				self.sessions.set(id, record.serialize())
				self.#live.set(id, record)
			},
			// Trust on first use, like WhatsApp clients.
			isTrustedIdentity: async () => true,
			loadIdentityKey: async () => undefined,
			saveIdentity: async () => false,
			loadPreKey: async (/** @type {number|string} */ id) => self.preKeys.get(Number(id)),
			removePreKey: async (/** @type {number|string} */ id) => {
				self.preKeys.delete(Number(id))
			},
			loadSignedPreKey: async () => self.signedPreKey.keyPair,
			getOurRegistrationId: () => self.registrationId,
			getOurIdentity: () => self.identity
		}
	}

	/**
	 * @param {{ phone: string, lid: string, name?: string | null }} who
	 * @param {() => void} [onChange]
	 */
	static create({ phone, lid, name }, onChange) {
		const identity = keyhelper.generateIdentityKeyPair()
		return new Contact(
			{
				phone,
				lid,
				name: name ?? null,
				identity,
				registrationId: keyhelper.generateRegistrationId(),
				signedPreKey: keyhelper.generateSignedPreKey(identity, SIGNED_PREKEY_ID),
				preKeys: new Map(),
				nextPreKeyId: 1,
				sessions: new Map()
			},
			onChange
		)
	}

	/** @param {any} json as produced by toJSON (after BufferJSON revival) @param {() => void} [onChange] */
	static fromJSON(json, onChange) {
		return new Contact(
			{
				...json,
				preKeys: new Map(json.preKeys.map((/** @type {[number, any]} */ [id, kp]) => [Number(id), kp])),
				sessions: new Map(Object.entries(json.sessions))
			},
			onChange
		)
	}

	toJSON() {
		return {
			phone: this.phone,
			lid: this.lid,
			name: this.name,
			identity: this.identity,
			registrationId: this.registrationId,
			signedPreKey: this.signedPreKey,
			preKeys: [...this.preKeys],
			nextPreKeyId: this.nextPreKeyId,
			sessions: Object.fromEntries(this.sessions)
		}
	}

	get jid() {
		return pnJid(this.phone)
	}

	get lidJid() {
		return lidJid(this.lid)
	}

	/** Public view for the control API. */
	view() {
		return { phone: this.phone, lid: this.lid, name: this.name, jid: this.jid, lid_jid: this.lidJid }
	}

	/**
	 * A `<user>` node for an `encrypt get <key>` answer. Each fetch hands out a fresh one-time prekey whose
	 * private half is kept, so Baileys' pkmsg can be decrypted whichever fetch it came from.
	 * @param {string} jid echoed back exactly as Baileys asked
	 * @returns {import('baileys').BinaryNode}
	 */
	bundleNode(jid) {
		return {
			tag: 'user',
			attrs: { jid },
			content: [
				this.registrationNode(),
				{ tag: 'type', attrs: {}, content: KEY_BUNDLE_TYPE },
				{ tag: 'identity', attrs: {}, content: withoutKeyType(this.identity.pubKey) },
				this.#signedPreKeyNode(),
				this.#freshPreKeyNode()
			]
		}
	}

	/**
	 * The `<keys>` a phone puts in a retry receipt so the sender can start a new session without a prekey fetch
	 * (a fresh one-time prekey, kept like bundleNode's).
	 * @returns {import('baileys').BinaryNode}
	 */
	retryKeysNode() {
		return {
			tag: 'keys',
			attrs: {},
			content: [
				{ tag: 'type', attrs: {}, content: KEY_BUNDLE_TYPE },
				{ tag: 'identity', attrs: {}, content: withoutKeyType(this.identity.pubKey) },
				this.#freshPreKeyNode(),
				this.#signedPreKeyNode()
			]
		}
	}

	/** `<registration>`: the registration id as 4 bytes. @returns {import('baileys').BinaryNode} */
	registrationNode() {
		return { tag: 'registration', attrs: {}, content: encodeBigEndian(this.registrationId, 4) }
	}

	/** @returns {import('baileys').BinaryNode} */
	#signedPreKeyNode() {
		return {
			tag: 'skey',
			attrs: {},
			content: [
				{ tag: 'id', attrs: {}, content: encodeBigEndian(this.signedPreKey.keyId, 3) },
				{ tag: 'value', attrs: {}, content: withoutKeyType(this.signedPreKey.keyPair.pubKey) },
				{ tag: 'signature', attrs: {}, content: Buffer.from(this.signedPreKey.signature) }
			]
		}
	}

	/** A new one-time prekey whose private half is kept. @returns {import('baileys').BinaryNode} */
	#freshPreKeyNode() {
		const id = this.nextPreKeyId++
		const preKey = keyhelper.generatePreKey(id)
		this.preKeys.set(id, preKey.keyPair)
		this.onChange()
		return {
			tag: 'key',
			attrs: {},
			content: [
				{ tag: 'id', attrs: {}, content: encodeBigEndian(id, 3) },
				{ tag: 'value', attrs: {}, content: withoutKeyType(preKey.keyPair.pubKey) }
			]
		}
	}

	/**
	 * Encrypt a proto.Message to the account's device, starting a session from the account's uploaded
	 * bundle if there is none. For a retry receipt: `bundle` (its `<keys>`) starts a new session from those keys;
	 * a `registrationId` other than the session's means the device was reinstalled, so a new session is started
	 * from the uploaded bundle, as a phone does after fetching the device's prekeys again.
	 * @param {import('./accounts.mjs').Account} account
	 * @param {proto.IMessage} message
	 * @param {() => ({ id: number, public: Buffer } | undefined)} takePreKey consumes one of the account's one-time prekeys
	 * @param {{ bundle?: any, registrationId?: number }} [retry] `bundle` as extractE2ESessionFromRetryReceipt returns it
	 * @returns {Promise<{ enc: 'pkmsg' | 'msg', body: Buffer }>}
	 */
	encryptTo(account, message, takePreKey, { bundle, registrationId } = {}) {
		return this.#locked(async () => {
			const address = addressOf(account)
			const record = await this.store.loadSession(address.toString())
			const open = record?.haveOpenSession() ? record.getOpenSession() : undefined
			const builder = new SessionBuilder(this.store, address)
			if (bundle) {
				await builder.initOutgoing(bundle)
			} else if (!open || (registrationId !== undefined && open.registrationId !== registrationId)) {
				const uploaded = account.bundle
				if (!uploaded) throw new Error(`account ${account.phone} has not uploaded a prekey bundle`)
				const preKey = takePreKey()
				await builder.initOutgoing({
					registrationId: uploaded.registrationId,
					identityKey: withKeyType(uploaded.identity),
					signedPreKey: {
						keyId: uploaded.signedPreKey.id,
						publicKey: withKeyType(uploaded.signedPreKey.public),
						signature: uploaded.signedPreKey.signature
					},
					preKey: preKey && { keyId: preKey.id, publicKey: withKeyType(preKey.public) }
				})
			}
			const { type, body } = await new SessionCipher(this.store, address).encrypt(encodeWAMessage(message))
			return { enc: type === 3 ? 'pkmsg' : 'msg', body: Buffer.from(body, 'binary') }
		})
	}

	/**
	 * Decrypt an `<enc>` payload Baileys sent from the account's device.
	 * @param {{ phone: string, device: number }} account
	 * @param {string} type 'pkmsg' | 'msg'
	 * @param {Buffer} body
	 * @returns {Promise<proto.Message>}
	 */
	decryptFrom(account, type, body) {
		return this.#locked(async () => {
			const cipher = new SessionCipher(this.store, addressOf(account))
			let plaintext
			if (type === 'pkmsg') plaintext = await cipher.decryptPreKeyWhisperMessage(body)
			else if (type === 'msg') plaintext = await cipher.decryptWhisperMessage(body)
			else throw new Error(`unsupported enc type ${type}`)
			return proto.Message.decode(unpadRandomMax16(plaintext))
		})
	}

	/**
	 * Record a message that arrived (decrypted) from an account. A phone keeps one message per id: a second arrival
	 * of the same id is a duplicate, counted and dropped.
	 * @param {string} account phone @param {string} id @param {string | null} text
	 * @returns {number} how many times this id has now arrived (1 = new)
	 */
	noteReceived(account, id, text, addressedTo = '') {
		const key = `${account} ${id}`
		const seen = this.#received.get(key)
		if (seen) return ++seen.count
		this.#received.set(key, { account, id, text, at: Date.now(), count: 1 })
		if (addressedTo) this.#addressedTo.set(key, addressedTo)
		if (this.#addressedTo.size > MAX_RECEIVED) this.#addressedTo.delete(/** @type {string} */ (this.#addressedTo.keys().next().value))
		if (this.#received.size > MAX_RECEIVED) this.#received.delete(/** @type {string} */ (this.#received.keys().next().value))
		return 1
	}

	/** @param {string} [account] only messages from this account @returns {{ account: string, id: string, text: string | null, at: number, count: number }[]} */
	received(account) {
		const all = [...this.#received.values()]
		return account ? all.filter(m => m.account === account) : all
	}

	/**
	 * Mark the account's messages read (all received and unread, or only `ids`): what a read receipt names.
	 * @param {string} account @param {string[]} [ids] @returns {{ id: string, to: string }[]}
	 */
	markRead(account, ids) {
		const out = []
		for (const m of this.received(account)) {
			const key = `${account} ${m.id}`
			if ((ids && !ids.includes(m.id)) || this.#read.has(key)) continue
			this.#read.add(key)
			out.push({ id: m.id, to: this.#addressedTo.get(key) ?? '' })
		}
		return out
	}

	/** Treat the next `times` messages from the account as undecryptable (tests of the retry path). */
	failNextFrom(/** @type {string} */ account, times = 1) {
		this.#failNext.set(account, (this.#failNext.get(account) ?? 0) + times)
	}

	/** Consume one forced failure for the account, if any. @param {string} account */
	takeForcedFailure(account) {
		const left = this.#failNext.get(account)
		if (!left) return false
		if (left > 1) this.#failNext.set(account, left - 1)
		else this.#failNext.delete(account)
		return true
	}

	/** Drop the session with an account's device (the device was removed or re-paired). */
	forgetSessionWith(/** @type {{ phone: string, device: number }} */ account) {
		const id = addressOf(account).toString()
		this.#live.delete(id)
		if (this.sessions.delete(id)) this.onChange()
	}

	/**
	 * @template T
	 * @param {() => Promise<T>} fn
	 * @returns {Promise<T>}
	 */
	#locked(fn) {
		const run = this.#lock.then(fn).catch(err => {
			this.#live.clear()
			throw err
		})
		this.#lock = run.then(
			() => this.onChange(),
			() => this.onChange()
		)
		return run
	}
}
