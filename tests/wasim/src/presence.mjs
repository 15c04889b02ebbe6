// What Baileys says about itself rather than in a message: chat states (`<chatstate>`, sendPresenceUpdate's
// composing/recording/paused for one chat: the "typing…" a contact sees) and presence (`<presence>`: available or
// unavailable for everyone, or a subscription to someone's). WhatsApp relays chat states to the contact's phone
// and answers neither, so the simulator only records them as events the tests can wait for.
import { decodeJid, firstChild } from './wire.mjs'

/**
 * `<chatstate to><composing media?/></chatstate>` or `<paused/>`. `to` = the contact's phone when the chat is a
 * simulated contact (addressed by phone number or LID), else null; `stanza_to` = the jid as Baileys wrote it.
 * @param {import('./server.mjs').Simulator} sim
 * @param {import('./server.mjs').Connection} conn
 * @param {import('baileys').BinaryNode} node
 */
export function handleChatstate(sim, conn, node) {
	if (!conn.isOpen) return
	const child = firstChild(node)
	const stanzaTo = node.attrs.to ?? null
	const contact = sim.state.contactByUser(decodeJid(stanzaTo ?? undefined)?.user)
	sim.emit('chatstate', {
		account: conn.account,
		to: contact?.phone ?? null,
		stanza_to: stanzaTo,
		state: child?.tag ?? null,
		media: child?.attrs?.media ?? null
	})
}

/**
 * `<presence type name?>` (available/unavailable) or `<presence type="subscribe" to>`.
 * @param {import('./server.mjs').Simulator} sim
 * @param {import('./server.mjs').Connection} conn
 * @param {import('baileys').BinaryNode} node
 */
export function handlePresence(sim, conn, node) {
	if (!conn.isOpen) return
	sim.emit('presence', { account: conn.account, type: node.attrs.type ?? null, to: node.attrs.to ?? null })
}
