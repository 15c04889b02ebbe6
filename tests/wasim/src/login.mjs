// Login with saved creds: <failure reason=401> for unknown devices; otherwise replace any older connection
// of the same device (440 conflict), send <success>, deliver the messages held for the account (queued while it
// was away, or never receipted), then end the offline backlog with <ib><offline count=N/></ib> (Baileys flushes
// its event buffer on that).
import { S_WHATSAPP_NET, lidJid, unixNow } from './wire.mjs'
import { deliverOffline } from './messages.mjs'

/**
 * How long the end of the offline backlog waits for Baileys to have handled the queued messages. Baileys
 * processes offline messages asynchronously and flushes its event buffer on <ib><offline>; sent before
 * it has upserted them, the 'append' events would sit in its post-login buffer for 20 s.
 */
const OFFLINE_SETTLE_TIMEOUT_MS = 5000

/**
 * @param {import('./server.mjs').Simulator} sim
 * @param {import('./server.mjs').Connection} conn
 * @param {import('baileys').proto.ClientPayload} payload
 */
export async function handleLogin(sim, conn, payload) {
	conn.kind = 'login'
	const phone = payload.username != null ? String(payload.username) : ''
	const device = payload.device ?? 0
	conn.device = device
	sim.emit('handshake', { conn_id: conn.id, kind: 'login', phone, device })

	const account = sim.state.accounts.get(phone)
	if (!account || account.device !== device) {
		sim.emit('login.failure', { conn_id: conn.id, phone, reason: 401 })
		conn.stage = 'failed'
		conn.endWith({ tag: 'failure', attrs: { reason: '401', location: 'wasim' } })
		return
	}

	for (const older of sim.openConnectionsFor(phone)) {
		sim.emit('login.conflict', { conn_id: conn.id, replaced_conn_id: older.id, account: phone })
		older.endWith({ tag: 'stream:error', attrs: {}, content: [{ tag: 'conflict', attrs: { type: 'replaced' } }] })
	}

	conn.account = phone
	conn.stage = 'open'
	const t = unixNow()
	conn.send({
		tag: 'success',
		attrs: { t, props: '1', abprops: '1', location: 'wasim', creation: t, lid: lidJid(account.lid, device) }
	})
	sim.emit('login.success', { conn_id: conn.id, account: phone, device })
	const delivered = deliverOffline(sim, conn, account)
	const endBacklog = () =>
		conn.send({ tag: 'ib', attrs: { from: S_WHATSAPP_NET }, content: [{ tag: 'offline', attrs: { count: String(delivered.length) } }] })
	if (!delivered.length) return endBacklog()
	// Not awaited: the receipts arrive through this connection's frame queue, which is running us now.
	void conn.waitUntilHandled(delivered, OFFLINE_SETTLE_TIMEOUT_MS).then(endBacklog)
}
