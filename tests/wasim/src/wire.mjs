// Small helpers shared by the stanza handlers: JIDs, ids, timestamps and node building.
import { randomBytes } from 'node:crypto'
import { jidDecode, jidEncode } from 'baileys'

export const S_WHATSAPP_NET = 's.whatsapp.net'
const PN_SERVER = 's.whatsapp.net'
const LID_SERVER = 'lid'

/** Seconds since the epoch, as WhatsApp puts it in `t` attributes. */
export const unixNow = () => String(Math.floor(Date.now() / 1000))

/** A message id shaped like the ones real clients use (3EB0 + 16 hex digits). */
export const newMessageId = () => '3EB0' + pooledRandom(8).toString('hex').toUpperCase()

/** Random bytes handed out from a 4 KiB pool: a crypto.randomBytes call per message id / padding byte is slow under load. */
let pool = Buffer.alloc(0)
let poolOffset = 0
/**
 * @param {number} n bytes (at most 4096)
 * @returns {Buffer} a view into the pool: copy it if it must outlive the next call
 */
export function pooledRandom(n) {
	if (poolOffset + n > pool.length) {
		pool = randomBytes(4096)
		poolOffset = 0
	}
	const out = pool.subarray(poolOffset, poolOffset + n)
	poolOffset += n
	return out
}

/** A short random id for server-initiated iqs and notifications. */
export const newStanzaId = (/** @type {string} */ prefix) => `${prefix}-${randomBytes(4).toString('hex')}`

/** @param {string} user @param {number} [device] */
export const pnJid = (user, device) => jidEncode(user, PN_SERVER, device || undefined)
/** @param {string} user @param {number} [device] */
export const lidJid = (user, device) => jidEncode(user, LID_SERVER, device || undefined)

/**
 * Decode a jid into {user, server, device}; undefined for anything malformed.
 * @param {string | undefined} jid
 */
export function decodeJid(jid) {
	if (typeof jid !== 'string' || !jid.includes('@')) return undefined
	const d = jidDecode(jid)
	return d?.user ? { user: d.user, server: d.server, device: d.device ?? 0 } : undefined
}

/**
 * Accept "15550001111", "+1 555 000 1111", "15550001111@s.whatsapp.net", "15550001111:5@s.whatsapp.net" or
 * "9999@lid" and return the bare user part, or undefined if it is not a plausible number.
 * @param {unknown} input
 */
export function bareUser(input) {
	if (typeof input === 'number' && Number.isSafeInteger(input) && input > 0) input = String(input)
	if (typeof input !== 'string') return undefined
	let user = input.trim()
	if (user.includes('@')) user = decodeJid(user)?.user ?? ''
	else user = user.replace(/^\+/, '').replace(/[\s-]/g, '')
	return /^\d{3,20}$/.test(user) ? user : undefined
}

/** Big-endian unsigned integer from a byte buffer (prekey ids are u24, registration ids u32). */
export const readUintBE = (/** @type {Uint8Array} */ bytes) => bytes.reduce((acc, b) => acc * 256 + b, 0)

/**
 * First child of a node, if its content is a list of nodes.
 * @param {import('baileys').BinaryNode} node
 */
export const firstChild = node => (Array.isArray(node.content) ? node.content[0] : undefined)

/**
 * Bytes of a node's content, whatever form the decoder produced.
 * @param {import('baileys').BinaryNode | undefined} node
 */
export function contentBytes(node) {
	const c = node?.content
	if (c instanceof Uint8Array) return Buffer.from(c)
	if (typeof c === 'string') return Buffer.from(c, 'utf8')
	return undefined
}

/**
 * The generic `<iq type=result>` reply to a client iq.
 * @param {import('baileys').BinaryNode} iq
 * @param {import('baileys').BinaryNode[]} [content]
 */
export function iqResult(iq, content) {
	/** @type {import('baileys').BinaryNode} */
	const res = { tag: 'iq', attrs: { from: S_WHATSAPP_NET, type: 'result', id: iq.attrs.id } }
	if (content) res.content = content
	return res
}
