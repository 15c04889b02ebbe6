// Every <iq> Baileys sends gets an answer (an unanswered iq stalls Baileys for 60 s): the ones the
// flows depend on get real answers, the rest a generic <iq type=result>, and unknown ones are reported
// as `iq.unknown` events so tests notice new traffic.
import { getBinaryNodeChild, getBinaryNodeChildren } from 'baileys'
import { storeUpload, parseSignedPreKey } from './accounts.mjs'
import { onCompanionHello, onCompanionFinish, onPairDeviceSign } from './pairing.mjs'
import { S_WHATSAPP_NET, bareUser, contentBytes, decodeJid, firstChild, iqResult, pnJid } from './wire.mjs'

/**
 * @typedef {import('baileys').BinaryNode} BinaryNode
 * @typedef {import('./server.mjs').Simulator} Simulator
 * @typedef {import('./server.mjs').Connection} Connection
 * @typedef {import('./accounts.mjs').Account} Account
 * @typedef {(ctx: { sim: Simulator, conn: Connection, iq: BinaryNode, first: BinaryNode | undefined, account: Account | undefined }) => void | Promise<void>} IqHandler
 */

/** Privacy settings a fresh account reports (fetchPrivacySettings reads <category name value>). */
const PRIVACY_DEFAULTS = { readreceipts: 'all', profile: 'all', status: 'contacts', online: 'all', last: 'all', groupadd: 'all', calladd: 'all' }

/**
 * Handlers by `${xmlns} ${type} ${first child tag}`. Entries with value `null` are known iqs for which a
 * generic result is the right answer.
 * @type {Record<string, IqHandler | null>}
 */
const HANDLERS = {
	'encrypt get count': withAccount(countPreKeys),
	'encrypt set registration': withAccount(uploadPreKeys),
	'encrypt set rotate': withAccount(rotateSignedPreKey),
	'encrypt get digest': withAccount(({ conn, iq }) => conn.send(iqResult(iq, [{ tag: 'digest', attrs: {} }]))),
	'encrypt get key': withAccount(fetchPreKeys),
	'usync get usync': withAccount(usync),
	'md set link_code_companion_reg': linkCodeCompanionReg,
	'abt get props': ({ conn, iq }) => conn.send(iqResult(iq, [{ tag: 'props', attrs: { protocol: '1' } }])),
	'blocklist get ': ({ conn, iq }) => conn.send(iqResult(iq, [{ tag: 'list', attrs: {} }])),
	'privacy get privacy': ({ conn, iq }) =>
		conn.send(
			iqResult(iq, [
				{ tag: 'privacy', attrs: {}, content: Object.entries(PRIVACY_DEFAULTS).map(([name, value]) => ({ tag: 'category', attrs: { name, value } })) }
			])
		),
	'privacy set tokens': null,
	'passive set active': null,
	'passive set passive': null,
	'w:p get ping': null,
	'urn:xmpp:ping get ping': null
}

/**
 * @param {Simulator} sim
 * @param {Connection} conn
 * @param {BinaryNode} iq
 */
export async function handleIq(sim, conn, iq) {
	const { type, xmlns } = iq.attrs
	const first = firstChild(iq)
	if (type === 'result' || type === 'error') {
		// Answers to our own iqs (pair-device, pair-success); only pair-device-sign carries anything.
		sim.countIq(iq, true)
		if (type === 'result' && first?.tag === 'pair-device-sign') onPairDeviceSign(sim, conn, first)
		return
	}
	const key = `${xmlns} ${type} ${first?.tag ?? ''}`
	const known = Object.hasOwn(HANDLERS, key)
	sim.countIq(iq, known)
	const handler = known ? HANDLERS[key] : undefined
	if (!known) sim.emit('iq.unknown', { conn_id: conn.id, xmlns: xmlns ?? null, type: type ?? null, child: first?.tag ?? null })
	if (!handler) {
		conn.send(iqResult(iq))
		return
	}
	const account = conn.account ? sim.state.accounts.get(conn.account) : undefined
	await handler({ sim, conn, iq, first, account })
}

/**
 * Handlers that only make sense on a logged-in connection answer 401 elsewhere.
 * @param {(ctx: { sim: Simulator, conn: Connection, iq: BinaryNode, first: BinaryNode | undefined, account: Account }) => void | Promise<void>} fn
 * @returns {IqHandler}
 */
function withAccount(fn) {
	return ctx => {
		if (!ctx.account || !ctx.conn.isOpen) {
			ctx.conn.send({
				tag: 'iq',
				attrs: { from: S_WHATSAPP_NET, type: 'error', id: ctx.iq.attrs.id },
				content: [{ tag: 'error', attrs: { code: '401', text: 'not-authorized' } }]
			})
			return
		}
		return fn({ ...ctx, account: ctx.account })
	}
}

/** `encrypt get <count>`: how many one-time prekeys the server still holds (Baileys tops up below 5). */
/** @type {Parameters<typeof withAccount>[0]} */
function countPreKeys({ conn, iq, account }) {
	conn.send(iqResult(iq, [{ tag: 'count', attrs: { value: String(account.preKeys.length) } }]))
}

/** `encrypt set`: the prekey bundle upload (registration id, identity, signed prekey, one-time prekeys). */
/** @type {Parameters<typeof withAccount>[0]} */
function uploadPreKeys({ sim, conn, iq, account }) {
	const added = storeUpload(account, iq)
	sim.state.changed()
	conn.send(iqResult(iq))
	sim.emit('prekeys.uploaded', { account: account.phone, count: added, total: account.preKeys.length })
}

/** `encrypt set <rotate><skey>`: a new signed prekey. */
/** @type {Parameters<typeof withAccount>[0]} */
function rotateSignedPreKey({ sim, conn, iq, first, account }) {
	const skey = first && getBinaryNodeChild(first, 'skey')
	if (skey && account.bundle) {
		account.bundle.signedPreKey = parseSignedPreKey(skey)
		sim.state.changed()
	}
	conn.send(iqResult(iq))
}

/**
 * `encrypt get <key><user jid/>…`: prekey bundles of simulated contacts. Unknown users are left out: an
 * <error> inside one <user> makes Baileys reject the whole batch.
 * @type {Parameters<typeof withAccount>[0]}
 */
function fetchPreKeys({ sim, conn, iq, first }) {
	const users = first ? getBinaryNodeChildren(first, 'user') : []
	const bundles = []
	for (const user of users) {
		const target = decodeJid(user.attrs.jid)
		const contact = target && target.device === 0 ? sim.state.contactByUser(target.user) : undefined
		if (contact) bundles.push(contact.bundleNode(user.attrs.jid))
	}
	conn.send(iqResult(iq, [{ tag: 'list', attrs: {}, content: bundles }]))
}

/**
 * `usync`: devices, LIDs and "is on WhatsApp" for the users asked about. The own account lists only its
 * own companion device (with key-index, or Baileys drops it) and never gets a <lid> (that would make
 * Baileys fetch a bundle for its own LID). Contacts have device 0 and, when asked by PN, their LID.
 * @type {Parameters<typeof withAccount>[0]}
 */
function usync({ sim, conn, iq, first, account }) {
	if (!first) return conn.send(iqResult(iq))
	const protocols = new Set((Array.isArray(getBinaryNodeChild(first, 'query')?.content) ? /** @type {BinaryNode[]} */ (getBinaryNodeChild(first, 'query')?.content) : []).map(p => p.tag))
	const users = getBinaryNodeChildren(getBinaryNodeChild(first, 'list'), 'user')
	const list = users.map(user => {
		// A phone-number lookup (onWhatsApp) has no jid, only <contact>+1555…</contact>.
		const phoneAsked = bareUser(contentBytes(getBinaryNodeChild(user, 'contact'))?.toString())
		const decoded = decodeJid(user.attrs.jid)
		const userPart = decoded?.user ?? phoneAsked
		const own = userPart === account.phone || userPart === account.lid
		const contact = sim.state.contactByUser(userPart)
		const jid = user.attrs.jid ?? (contact ? contact.jid : pnJid(userPart ?? '0'))
		/** @type {BinaryNode[]} */
		const content = []
		if (protocols.has('devices')) {
			const devices = own
				? [{ tag: 'device', attrs: { id: String(account.device), 'key-index': '1' } }]
				: contact
					? [{ tag: 'device', attrs: { id: '0' } }]
					: []
			content.push({ tag: 'devices', attrs: {}, content: [{ tag: 'device-list', attrs: {}, content: devices }] })
		}
		if (protocols.has('lid') && contact && !own && (decoded?.server ?? 's.whatsapp.net') === 's.whatsapp.net') {
			content.push({ tag: 'lid', attrs: { val: contact.lidJid } })
		}
		if (protocols.has('contact')) content.push({ tag: 'contact', attrs: { type: contact || own ? 'in' : 'out' } })
		return { tag: 'user', attrs: { jid }, content }
	})
	conn.send(
		iqResult(iq, [
			{
				tag: 'usync',
				attrs: { sid: first.attrs.sid ?? '', index: '0', last: 'true' },
				content: [
					{ tag: 'result', attrs: {} },
					{ tag: 'list', attrs: {}, content: list }
				]
			}
		])
	)
}

/** `md set <link_code_companion_reg stage=…>`: the pairing-code exchange. */
/** @type {IqHandler} */
function linkCodeCompanionReg({ sim, conn, iq, first }) {
	if (!first) return conn.send(iqResult(iq))
	if (first.attrs.stage === 'companion_hello') return onCompanionHello(sim, conn, iq, first)
	conn.send(iqResult(iq))
	if (first.attrs.stage === 'companion_finish') onCompanionFinish(sim, conn, first)
}
