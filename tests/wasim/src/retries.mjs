// Retry receipts, both ways. A device that cannot decrypt a message answers with <receipt type="retry"> (its
// registration id, and from the second try its keys) instead of a delivery receipt; the sender encrypts the same
// message again, with the same id, and sends it once more (on a new session when the receipt carries keys).
import { extractE2ESessionFromRetryReceipt, getBinaryNodeChild, getBinaryNodeChildUInt } from 'baileys'
import { takePreKeyOf } from './accounts.mjs'
import { unixNow } from './wire.mjs'

/** Retry receipts answered per message, and asked per message; Baileys' own maxMsgRetryCount is 5 too. */
export const MAX_RETRIES = 5
/** How long a contact waits for the re-send it asked for before it reports the message undecryptable. */
const RETRY_WAIT_MS = 10_000

/**
 * Baileys could not decrypt a contact's message and sent a retry receipt: the contact encrypts the held message
 * again (same id, same text, a new Signal message) and sends it, as a phone does. With `<keys>` in the receipt it
 * starts a new session from them (a pkmsg); with a registration id other than its session's it starts one from the
 * device's uploaded bundle; otherwise it uses its current session.
 * @param {import('./server.mjs').Simulator} sim
 * @param {import('./server.mjs').Connection} conn
 * @param {import('baileys').BinaryNode} node the retry receipt
 * @param {import('./contacts.mjs').Contact} contact whose message it names
 */
export async function resendOnRetry(sim, conn, node, contact) {
	const account = sim.state.accounts.get(/** @type {string} */ (conn.account))
	const { id } = node.attrs
	const count = Number(getBinaryNodeChild(node, 'retry')?.attrs.count) || 1
	const about = { account: conn.account, from: contact.phone, id, count }
	const held = account && sim.state.held(account.phone, contact.phone, id)
	if (!account || !held) return void sim.emit('message.retry_refused', { ...about, reason: 'not_held' })
	if (count > MAX_RETRIES || held.retries >= MAX_RETRIES) return void sim.emit('message.retry_refused', { ...about, reason: 'limit' })
	held.retries++
	let encrypted
	try {
		encrypted = await contact.encryptTo(account, { conversation: held.text }, takePreKeyOf(sim, account), {
			bundle: extractE2ESessionFromRetryReceipt(node) ?? undefined,
			registrationId: getBinaryNodeChildUInt(node, 'registration', 4)
		})
	} catch (err) {
		// Unusable keys in the receipt (e.g. a bad signature) are the client's problem, not a reason to drop it.
		return void sim.emit('message.retry_refused', { ...about, reason: 'error', error: err instanceof Error ? err.message : String(err) })
	}
	const { enc, body } = encrypted
	// What the server holds is now this copy: a later redelivery sends it.
	held.enc = enc
	held.stanza = { ...held.stanza, content: [{ tag: 'enc', attrs: { v: '2', type: enc }, content: body }] }
	sim.state.changed()
	const target = sim.connectionFor(account.phone)
	if (target) {
		held.deliveries++
		target.send(held.stanza)
	}
	sim.emit('message.retry_resent', { ...about, enc })
}

/**
 * A contact could not decrypt a message Baileys sent it: its phone sends a retry receipt (count 1, 2, …, with its
 * registration id and a fresh key bundle) and waits for the re-send. After MAX_RETRIES receipts, or RETRY_WAIT_MS
 * without a re-send, the message is reported undecryptable.
 * @param {import('./server.mjs').Simulator} sim
 * @param {import('./server.mjs').Connection} conn
 * @param {{ account: import('./accounts.mjs').Account, contact: import('./contacts.mjs').Contact, node: import('baileys').BinaryNode, error: string }} failure
 */
export function askForRetry(sim, conn, { account, contact, node, error }) {
	const { id, to, t } = node.attrs
	const key = `${account.phone} ${id}`
	const asked = contact.retryAsks.get(key)
	clearTimeout(asked?.timer)
	const count = (asked?.count ?? 0) + 1
	const giveUp = (/** @type {string} */ why) => {
		contact.retryAsks.delete(key)
		// After a /reset this contact is gone: nothing to report.
		if (sim.state.contacts.get(contact.phone) !== contact) return
		sim.emit('message.undecryptable', { account: account.phone, to: contact.phone, id, error: `${error} (${why})` })
	}
	if (count > MAX_RETRIES) return giveUp(`still after ${MAX_RETRIES} retry receipts`)
	const timer = setTimeout(() => {
		if (contact.retryAsks.get(key)?.count === count) giveUp(`no re-send within ${RETRY_WAIT_MS / 1000} s of retry receipt ${count}`)
	}, RETRY_WAIT_MS).unref()
	contact.retryAsks.set(key, { count, timer })
	conn.send({
		tag: 'receipt',
		attrs: { from: to, id, type: 'retry', t: unixNow() },
		content: [
			{ tag: 'retry', attrs: { count: String(count), id, t: t ?? unixNow(), v: '1' } },
			contact.registrationNode(),
			contact.retryKeysNode()
		]
	})
	sim.emit('message.retry_requested', { account: account.phone, to: contact.phone, id, count, error })
}

/**
 * A message from the account decrypted: if the contact had asked for it again, that request is answered.
 * @param {import('./contacts.mjs').Contact} contact @param {string} account phone @param {string} id
 * @returns {boolean} whether this arrival answers a retry receipt
 */
export function retrySucceeded(contact, account, id) {
	const key = `${account} ${id}`
	const asked = contact.retryAsks.get(key)
	if (!asked) return false
	clearTimeout(asked.timer)
	contact.retryAsks.delete(key)
	return true
}
