// PN <-> LID mapping news for an account: the mex NotificationLinkedProfilesUpdates notification, which
// is the cheapest thing that makes Baileys emit `lid-mapping.update` (it stores the mapping too).
import { S_WHATSAPP_NET, lidJid, newStanzaId, pnJid, unixNow } from './wire.mjs'
import { notConnected } from './errors.mjs'

/**
 * @param {import('./server.mjs').Simulator} sim
 * @param {{ account: import('./accounts.mjs').Account, lid: string, pn: string }} req bare users
 */
export function sendLidMapping(sim, { account, lid, pn }) {
	const conn = sim.connectionFor(account.phone)
	if (!conn) throw notConnected(`account ${account.phone} has no open connection`)
	const update = { data: { xwa2_notify_linked_profiles: { jid: lidJid(lid), added_profiles: [{ pn: pnJid(pn) }] } } }
	conn.send({
		tag: 'notification',
		attrs: { from: S_WHATSAPP_NET, type: 'mex', id: newStanzaId('mex'), t: unixNow() },
		content: [{ tag: 'update', attrs: { op_name: 'NotificationLinkedProfilesUpdates' }, content: Buffer.from(JSON.stringify(update)) }]
	})
	sim.emit('lid_mapping.sent', { account: account.phone, lid, pn })
}
