// 1:1 text messages in both directions between simulated contacts and the accounts' Baileys clients:
// contact -> Baileys (encrypted <message>, live or queued, held by the server until the device receipts it and
// delivered again at its next login otherwise) and Baileys -> contact (decrypt each <to>/<enc>, ack it, drop ids
// the contact already has, answer with the contact's delivery receipt, or a retry receipt when it cannot decrypt),
// plus the receipts and message acks Baileys sends.
import { getBinaryNodeChild, getBinaryNodeChildren } from 'baileys'
import { SimError, notConnected } from './errors.mjs'
import { randomBytes } from 'node:crypto'
import { decodeJid, newMessageId, unixNow, contentBytes, pnJid } from './wire.mjs'
import { askForRetry, resendOnRetry, retrySucceeded } from './retries.mjs'
import { takePreKeyOf } from './accounts.mjs'

/** How long a send waits for a just-logged-in account to upload its prekeys. */
const PREKEY_WAIT_MS = 10_000

/**
 * @typedef {object} SendRequest
 * @property {import('./contacts.mjs').Contact} contact
 * @property {import('./accounts.mjs').Account} account
 * @property {string} text
 * @property {'pn'|'lid'} [addressing]
 * @property {string} [id]
 * @property {boolean} [alt] include sender_lid / sender_pn
 * @property {'error'|'queue'} [ifOffline]
 */

/**
 * A contact sends an encrypted text to an account.
 * @param {import('./server.mjs').Simulator} sim
 * @param {SendRequest} req
 * @returns {Promise<{ id: string, enc: 'pkmsg'|'msg', queued: boolean }>}
 */
export async function sendContactMessage(sim, { contact, account, text, addressing = 'pn', id = newMessageId(), alt = true, ifOffline = 'error' }) {
	if (!sim.isConnected(account.phone) && ifOffline !== 'queue') throw notConnected(`account ${account.phone} has no open connection`)
	if (!account.bundle && sim.isConnected(account.phone)) {
		// Right after the first login Baileys is still uploading its prekeys; give it a moment.
		await sim.events.wait({ type: 'prekeys.uploaded', match: { account: account.phone }, after: sim.events.lastSeq, timeoutMs: PREKEY_WAIT_MS })
	}
	if (!account.bundle) throw new SimError(409, 'no_prekeys', `account ${account.phone} has not uploaded prekeys yet (it must log in once)`)

	const { enc, body } = await contact.encryptTo(account, { conversation: text }, takePreKeyOf(sim, account))
	const addressAttrs =
		addressing === 'lid'
			? { from: contact.lidJid, addressing_mode: 'lid', ...(alt ? { sender_pn: contact.jid } : {}) }
			: { from: contact.jid, ...(alt ? { sender_lid: contact.lidJid } : {}) }
	/** @type {import('baileys').BinaryNode} */
	const stanza = {
		tag: 'message',
		attrs: { ...addressAttrs, id, t: unixNow(), type: 'text', ...(contact.name ? { notify: contact.name } : {}) },
		content: [{ tag: 'enc', attrs: { v: '2', type: enc }, content: body }]
	}

	/** @type {import('./state.mjs').PendingMessage} */
	const held = { id, from: contact.phone, addressing, enc, stanza, text, sentAt: Date.now(), deliveries: 0, retries: 0 }

	// Re-check: the connection may have gone while we were encrypting.
	const conn = sim.connectionFor(account.phone)
	if (conn) {
		// A contact's phone hands its privacy token (tctoken) to whoever it starts a session with; Baileys stores
		// it and attaches it to its own 1:1 sends, without which WhatsApp answers error 463.
		// Once per contact and account device: every message stays a pkmsg until the account answers, and a token
		// per message would make Baileys store a tctoken per message (and cost both sides under load).
		const tokenKey = `${contact.phone}>${account.phone}:${account.device}@${account.pairedAt}`
		if (enc === 'pkmsg' && !sim.privacyTokensSent.has(tokenKey)) {
			sim.privacyTokensSent.add(tokenKey)
			sendPrivacyToken(sim, conn, contact, account, alt)
		}
		// Held before it is written: the receipt can only come after.
		held.deliveries = 1
		sim.state.hold(account.phone, held)
		conn.send(stanza)
		sim.emit('message.incoming_sent', { account: account.phone, from: contact.phone, id, enc, addressing, offline: false })
		return { id, enc, queued: false }
	}
	if (ifOffline !== 'queue') throw notConnected(`account ${account.phone} disconnected while sending`)
	sim.state.hold(account.phone, held)
	return { id, enc, queued: true }
}

/**
 * At login, deliver every message the server holds for the account, in the order they were sent, with
 * offline="1" (Baileys upserts them as 'append'): the ones queued while it was away and the ones an earlier
 * connection got but never receipted. Those go out again as the same stanza (same id, same ciphertext), as
 * WhatsApp does; they stay held until receipted.
 * @param {import('./server.mjs').Simulator} sim
 * @param {import('./server.mjs').Connection} conn
 * @param {import('./accounts.mjs').Account} account
 * @returns {string[]} ids of the messages delivered
 */
export function deliverOffline(sim, conn, account) {
	const held = sim.state.pending.get(account.phone)
	if (!held?.size) return []
	const ids = []
	for (const message of held.values()) {
		const { id, from, addressing, enc, stanza } = message
		const redelivery = message.deliveries > 0
		message.deliveries++
		conn.send({ ...stanza, attrs: { ...stanza.attrs, offline: '1' } })
		// `redelivery` only when true: the event keeps the shape it had before redelivery existed.
		sim.emit('message.incoming_sent', { account: account.phone, from, id, enc, addressing, offline: true, ...(redelivery ? { redelivery } : {}) })
		if (redelivery) sim.emit('message.redelivered', { account: account.phone, from, id })
		ids.push(id)
	}
	sim.state.changed()
	return ids
}

/**
 * A <message> Baileys sent: ack it, decrypt every <enc> addressed to a simulated contact, report it, and
 * answer with the contact's delivery receipt.
 * @param {import('./server.mjs').Simulator} sim
 * @param {import('./server.mjs').Connection} conn
 * @param {import('baileys').BinaryNode} node
 */
export async function handleOutgoingMessage(sim, conn, node) {
	const { id, to: stanzaTo } = node.attrs
	const account = conn.account ? sim.state.accounts.get(conn.account) : undefined
	if (!account || !conn.isOpen) {
		sim.log.warn('message from a connection that is not logged in', { conn: conn.id })
		return
	}
	conn.send({ tag: 'ack', attrs: { class: 'message', id, from: stanzaTo, t: unixNow() } })

	const participants = getBinaryNodeChild(node, 'participants')
	const targets = participants
		? getBinaryNodeChildren(participants, 'to').map(to => ({ jid: to.attrs.jid, encs: getBinaryNodeChildren(to, 'enc') }))
		: [{ jid: stanzaTo, encs: getBinaryNodeChildren(node, 'enc') }]

	const report = (/** @type {string} */ to, /** @type {string} */ error) =>
		sim.emit('message.undecryptable', { account: account.phone, to, id, error })
	for (const { jid, encs } of targets) {
		const target = decodeJid(jid)
		// Fan-out to the account's own devices (there are none besides the sender): nothing to do.
		if (!target || target.user === account.phone || target.user === account.lid) continue
		const contact = sim.state.contactByUser(target.user)
		if (!contact || target.device !== 0) {
			report(jid, 'no simulated contact device at that jid')
			continue
		}
		let delivered = false
		let error = ''
		for (const enc of encs) {
			const body = contentBytes(enc)
			try {
				if (!body) throw new Error('empty <enc>')
				if (contact.takeForcedFailure(account.phone)) throw new Error('decryption failure forced by /contacts/fail-next-decrypt')
				const message = await contact.decryptFrom(account, enc.attrs.type, body)
				const text = message.conversation || message.extendedTextMessage?.text || null
				const retry = retrySucceeded(contact, account.phone, id)
				const count = contact.noteReceived(account.phone, id, text, stanzaTo)
				if (count === 1) {
					sim.emit('message.outgoing', { account: account.phone, to: contact.phone, stanza_to: stanzaTo, id, enc: enc.attrs.type, text, message: message.toJSON(), retry })
				} else {
					// A phone keeps one message per id: a second copy is confirmed (receipt below) but not shown again.
					sim.stats.duplicates++
					sim.emit('message.duplicate', { account: account.phone, to: contact.phone, id, count })
				}
				delivered = true
			} catch (err) {
				error = err instanceof Error ? err.message : String(err)
			}
		}
		// The contact's phone confirms delivery (Baileys turns this into a messages.update status), or asks for
		// the message again, as a phone does when it cannot decrypt it.
		if (delivered) conn.send({ tag: 'receipt', attrs: { from: stanzaTo, id, t: unixNow() } })
		else if (error) askForRetry(sim, conn, { account, contact, node, error })
	}
	if (!targets.length) report(stanzaTo, 'message has no recipients')
}

/**
 * The contact opens the chat: a read receipt for each message from the account it has not read yet (or only `ids`),
 * from the jid the message was addressed to, as a phone sends it. Baileys turns it into a `messages.update` with
 * status READ.
 * @param {import('./server.mjs').Simulator} sim
 * @param {import('./contacts.mjs').Contact} contact
 * @param {{ phone: string }} account
 * @param {string[]} [ids]
 */
export function readMessages(sim, contact, account, ids) {
	const conn = sim.connectionFor(account.phone)
	if (!conn) throw notConnected(`account ${account.phone} has no open connection`)
	const read = contact.markRead(account.phone, ids)
	for (const { id, to } of read) {
		conn.send({ tag: 'receipt', attrs: { from: to || contact.jid, id, type: 'read', t: unixNow() } })
		sim.emit('receipt.read', { account: account.phone, contact: contact.phone, id })
	}
	return read.map(r => r.id)
}

/**
 * A <receipt> Baileys sent (delivery, read, retry…): record it and ack it like the server does. Any receipt but a
 * retry settles the contact's messages it names (the server stops holding them); a retry receipt makes the contact
 * send the message again.
 * @param {import('./server.mjs').Simulator} sim
 * @param {import('./server.mjs').Connection} conn
 * @param {import('baileys').BinaryNode} node
 */
export async function handleReceipt(sim, conn, node) {
	const { id, to, type } = node.attrs
	const list = getBinaryNodeChild(node, 'list')
	const ids = [id, ...getBinaryNodeChildren(list, 'item').map(item => item.attrs.id)].filter(Boolean)
	sim.emit('receipt', { account: conn.account, to, ids, type: type ?? 'delivery' })
	conn.noteHandled(ids)
	conn.send({ tag: 'ack', attrs: { class: 'receipt', id, from: to, ...(type ? { type } : {}) } })
	const contact = conn.account ? sim.state.contactByUser(decodeJid(to)?.user) : undefined
	if (!contact) return
	if (type === 'retry') return resendOnRetry(sim, conn, node, contact)
	for (const messageId of ids) settle(sim, /** @type {string} */ (conn.account), contact.phone, messageId, type ?? 'delivery')
}

/**
 * An <ack class="message"> Baileys sent for a contact's message. A positive ack settles it like a receipt; a NACK
 * (an `error` attribute: Baileys could not process it) leaves it held.
 * @param {import('./server.mjs').Simulator} sim
 * @param {import('./server.mjs').Connection} conn
 * @param {import('baileys').BinaryNode} node
 */
export function handleMessageAck(sim, conn, node) {
	const { id, to, error } = node.attrs
	if (!id) return
	conn.noteHandled([id])
	const contact = conn.account ? sim.state.contactByUser(decodeJid(to)?.user) : undefined
	if (!contact) return
	sim.emit('message.ack', { account: conn.account, from: contact.phone, id, error: error ?? null })
	if (error === undefined) settle(sim, /** @type {string} */ (conn.account), contact.phone, id, 'ack')
}

/**
 * @param {import('./server.mjs').Simulator} sim
 * @param {string} account @param {string} from contact phone @param {string} id @param {string} type
 */
function settle(sim, account, from, id, type) {
	if (sim.state.release(account, from, id)) sim.emit('message.receipted', { account, from, id, type })
}

/**
 * `<notification type="privacy_token">` from a contact, carrying a fresh trusted-contact token for the account.
 * @param {import('./server.mjs').Simulator} sim
 * @param {import('./server.mjs').Connection} conn
 * @param {import('./contacts.mjs').Contact} contact
 * @param {import('./accounts.mjs').Account} account
 * @param {boolean} alt include sender_lid, as WhatsApp does
 */
function sendPrivacyToken(sim, conn, contact, account, alt) {
	const t = unixNow()
	conn.send({
		tag: 'notification',
		attrs: { from: contact.jid, ...(alt ? { sender_lid: contact.lidJid } : {}), type: 'privacy_token', id: newMessageId(), t },
		content: [{ tag: 'tokens', attrs: {}, content: [
			{ tag: 'token', attrs: { jid: pnJid(account.phone, account.device), t, type: 'trusted_contact' }, content: randomBytes(24) }
		] }]
	})
	sim.emit('privacy_token.sent', { account: account.phone, from: contact.phone })
}
