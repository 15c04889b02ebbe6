// Everything the simulator must remember across client reconnects, and (with --state FILE) across its
// own restarts: its root and Noise static key pairs, accounts, contacts and the messages the server holds for each
// account until its device receipts them.
// Serialised with Baileys' BufferJSON so Buffers round-trip; written atomically, debounced.
import { readFile, writeFile, rename } from 'node:fs/promises'
import { writeFileSync, renameSync } from 'node:fs'
import { BufferJSON, Curve } from 'baileys'
import { Contact } from './contacts.mjs'

const FORMAT_VERSION = 1
const SAVE_DEBOUNCE_MS = 100
/** However slow saves get, a change reaches the file within this long. */
const MAX_SAVE_DELAY_MS = 10_000

/**
 * @typedef {object} PendingMessage a contact's message the server holds until the account's device receipts it
 * @property {string} id
 * @property {string} from contact phone
 * @property {'pn'|'lid'} addressing
 * @property {'pkmsg'|'msg'} enc
 * @property {import('baileys').BinaryNode} stanza exactly as delivered (redelivered as is, with offline="1")
 * @property {string} text the plaintext, for re-encrypting it when the device asks for a retry
 * @property {number} sentAt ms since the epoch when it was first sent or queued
 * @property {number} deliveries how many times it was written to a socket (0: queued while offline)
 * @property {number} retries retry receipts answered with a fresh encryption
 */

/** A held message's key within its account: one message per contact and id. */
const pendingKey = (/** @type {string} */ from, /** @type {string} */ id) => `${from} ${id}`

export class SimState {
	/** @type {Map<string, import('./accounts.mjs').Account>} by phone */
	accounts = new Map()
	/** @type {Map<string, Contact>} by phone */
	contacts = new Map()
	/** @type {Map<string, Contact>} by LID user */
	contactsByLid = new Map()
	/**
	 * By account phone, then by pendingKey(from, id), in the order they were sent: a Map keeps insertion order and
	 * settles a receipt in O(1).
	 * @type {Map<string, Map<string, PendingMessage>>}
	 */
	pending = new Map()
	/** @type {NodeJS.Timeout | undefined} */
	#saveTimer
	/** @type {Promise<void>} */
	#saving = Promise.resolve()
	#writes = 0
	/** ms the last save took to serialise and write; later saves wait 10× that (see changed()) */
	#lastSaveMs = 0

	/**
	 * @param {{ rootKey: KeyPair, staticKey: KeyPair, file?: string, log: import('./log.mjs').Logger }} opts
	 * @typedef {{ public: Buffer, private: Buffer }} KeyPair
	 */
	constructor({ rootKey, staticKey, file, log }) {
		this.rootKey = rootKey
		this.staticKey = staticKey
		this.file = file
		this.log = log
	}

	/**
	 * Load FILE if it exists, otherwise start fresh (and create it on the first save).
	 * @param {{ file?: string, log: import('./log.mjs').Logger }} opts
	 */
	static async open({ file, log }) {
		let raw
		if (file) {
			try {
				raw = await readFile(file, 'utf8')
			} catch (err) {
				if (/** @type {NodeJS.ErrnoException} */ (err).code !== 'ENOENT') throw err
			}
		}
		if (!raw) {
			const state = new SimState({ rootKey: Curve.generateKeyPair(), staticKey: Curve.generateKeyPair(), file, log })
			state.changed()
			return state
		}
		const json = JSON.parse(raw, BufferJSON.reviver)
		if (json.version !== FORMAT_VERSION) throw new Error(`${file}: unsupported state format ${json.version}`)
		const state = new SimState({ rootKey: json.rootKey, staticKey: json.staticKey, file, log })
		for (const account of json.accounts) state.accounts.set(account.phone, account)
		for (const c of json.contacts) state.addContact(Contact.fromJSON(c, () => state.changed()))
		// "offline" is what files written before redelivery called the (then delivery-only) queue.
		for (const [phone, entries] of json.pending ?? json.offline) {
			const held = new Map()
			for (const m of entries) held.set(pendingKey(m.from, m.id), { text: '', sentAt: 0, deliveries: 0, retries: 0, ...m })
			state.pending.set(phone, held)
		}
		log.info('state loaded', { file, accounts: state.accounts.size, contacts: state.contacts.size })
		return state
	}

	/** @param {Contact} contact */
	addContact(contact) {
		this.contacts.set(contact.phone, contact)
		this.contactsByLid.set(contact.lid, contact)
		this.changed()
	}

	/**
	 * A contact by PN or LID user.
	 * @param {string | undefined} user
	 */
	contactByUser(user) {
		if (!user) return undefined
		return this.contacts.get(user) ?? this.contactsByLid.get(user)
	}

	/** @param {string | undefined} lid */
	accountByLid(lid) {
		for (const a of this.accounts.values()) if (a.lid === lid) return a
		return undefined
	}

	/**
	 * Hold a contact's message for an account until it is receipted. The same id from the same contact replaces
	 * the held one (and moves to the end): the server holds one message per id.
	 * @param {string} phone account
	 * @param {PendingMessage} message
	 */
	hold(phone, message) {
		let held = this.pending.get(phone)
		if (!held) this.pending.set(phone, (held = new Map()))
		const key = pendingKey(message.from, message.id)
		held.delete(key)
		held.set(key, message)
		this.changed()
	}

	/**
	 * @param {string} phone account @param {string} from contact phone @param {string} id
	 * @returns {PendingMessage | undefined}
	 */
	held(phone, from, id) {
		return this.pending.get(phone)?.get(pendingKey(from, id))
	}

	/**
	 * Drop a held message (its device receipted it); its bytes go with it.
	 * @param {string} phone account @param {string} from contact phone @param {string} id
	 * @returns {PendingMessage | undefined} the message, if it was held
	 */
	release(phone, from, id) {
		const held = this.pending.get(phone)
		const key = pendingKey(from, id)
		const message = held?.get(key)
		if (!held || !message) return undefined
		held.delete(key)
		if (!held.size) this.pending.delete(phone)
		this.changed()
		return message
	}

	/**
	 * Forget an account's device: the account, its held messages and the contacts' sessions with it.
	 * @param {string} phone
	 */
	deleteAccount(phone) {
		const account = this.accounts.get(phone)
		if (!account) return
		for (const contact of this.contacts.values()) contact.forgetSessionWith(account)
		this.accounts.delete(phone)
		this.pending.delete(phone)
		this.changed()
	}

	/** Forget accounts, contacts and queues; keep the key pairs so running clients keep trusting us. */
	reset() {
		this.accounts.clear()
		this.contacts.clear()
		this.contactsByLid.clear()
		this.pending.clear()
		this.changed()
	}

	/**
	 * Note a change; the file is rewritten shortly after (coalescing bursts such as Signal operations). The whole
	 * state is serialised each time, which with hundreds of accounts (each holding its uploaded prekeys) takes
	 * long, so the delay grows with the last save's cost: saving stays under ~10% of the simulator's time under load.
	 */
	changed() {
		if (!this.file || this.#saveTimer) return
		this.#saveTimer = setTimeout(() => {
			this.#saveTimer = undefined
			this.#saving = this.#saving.then(() => this.#write()).catch(err => this.log.error('state save failed', { error: String(err) }))
		}, Math.min(MAX_SAVE_DELAY_MS, Math.max(SAVE_DEBOUNCE_MS, 10 * this.#lastSaveMs)))
	}

	/** Write any pending change now (used on shutdown). Synchronous so it also works from signal handlers. */
	flushSync() {
		if (!this.file) return
		clearTimeout(this.#saveTimer)
		this.#saveTimer = undefined
		const tmp = this.#tmpName()
		writeFileSync(tmp, this.#serialise())
		renameSync(tmp, this.file)
	}

	async #write() {
		if (!this.file) return
		const started = performance.now()
		const tmp = this.#tmpName()
		await writeFile(tmp, this.#serialise())
		await rename(tmp, this.file)
		this.#lastSaveMs = performance.now() - started
	}

	/** Each write gets its own temp file, so a shutdown flush never races an in-flight async save. */
	#tmpName() {
		return `${this.file}.${process.pid}.${++this.#writes}.tmp`
	}

	#serialise() {
		return JSON.stringify(
			{
				version: FORMAT_VERSION,
				rootKey: this.rootKey,
				staticKey: this.staticKey,
				accounts: [...this.accounts.values()],
				contacts: [...this.contacts.values()].map(c => c.toJSON()),
				pending: [...this.pending].map(([phone, held]) => [phone, [...held.values()]])
			},
			BufferJSON.replacer
		)
	}
}
