// Forced disconnects of an account's connections, the ways the real server ends a session.
import { notFound } from './errors.mjs'

/** Stream error stanzas by code; anything else is sent as <stream:error code=N/>. */
const STREAM_ERRORS = {
	// Baileys maps <conflict> to DisconnectReason.connectionReplaced (440).
	440: () => ({ tag: 'stream:error', attrs: {}, content: [{ tag: 'conflict', attrs: { type: 'replaced' } }] })
}

/**
 * @param {import('./server.mjs').Simulator} sim
 * @param {{ phone: string, code: number, mode: 'stream_error'|'drop' }} req
 * @returns {number} connections closed
 */
export function disconnectAccount(sim, { phone, code, mode }) {
	if (!sim.state.accounts.has(phone)) throw notFound(`no account ${phone}`)
	const conns = sim.openConnectionsFor(phone)
	for (const conn of conns) {
		sim.emit('disconnect', { conn_id: conn.id, account: phone, code: mode === 'drop' ? null : code, mode })
		if (mode === 'drop') conn.terminate()
		else conn.endWith(STREAM_ERRORS[/** @type {440} */ (code)]?.() ?? { tag: 'stream:error', attrs: { code: String(code) } })
	}
	// 401 = this device was removed: its next login must fail.
	if (mode === 'stream_error' && code === 401) sim.state.deleteAccount(phone)
	return conns.length
}
