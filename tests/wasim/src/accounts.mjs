// Simulated WhatsApp accounts: one companion device (the Baileys client) per phone number, with the
// "phone identity" key pair that signs its ADV device identity and the prekey bundle it uploaded.
import { Curve, getBinaryNodeChild, getBinaryNodeChildren, getBinaryNodeChildBuffer } from 'baileys'
import { pnJid, lidJid, readUintBE } from './wire.mjs'

/**
 * @typedef {object} Bundle
 * @property {number} registrationId
 * @property {Buffer} identity 32-byte identity public key
 * @property {{ id: number, public: Buffer, signature: Buffer }} signedPreKey
 */

/**
 * @typedef {object} Account
 * @property {string} phone PN user
 * @property {string} lid LID user
 * @property {number} device companion device id (>= 1)
 * @property {string | null} name
 * @property {{ public: Buffer, private: Buffer }} accountKey signs the ADV device identity
 * @property {Buffer | null} companionIdentity the companion's identity public key, learnt at pairing
 * @property {Bundle | null} bundle
 * @property {{ id: number, public: Buffer }[]} preKeys one-time prekeys not yet handed out
 * @property {number} pairedAt ms since the epoch
 */

/**
 * @param {{ phone: string, lid: string, device: number, name?: string | null, companionIdentity: Buffer }} fields
 * @returns {Account}
 */
export function createAccount({ phone, lid, device, name, companionIdentity }) {
	return {
		phone,
		lid,
		device,
		name: name ?? null,
		accountKey: Curve.generateKeyPair(),
		companionIdentity,
		bundle: null,
		preKeys: [],
		pairedAt: Date.now()
	}
}

/**
 * The `takePreKey` of Contact.encryptTo: hands out one of the account's uploaded one-time prekeys.
 * @param {{ state: { changed: () => void } }} sim
 * @param {Account} account
 */
export const takePreKeyOf = (sim, account) => () => {
	const preKey = account.preKeys.shift()
	sim.state.changed()
	return preKey
}

/** @param {Account} account @param {boolean} connected */
export function accountView(account, connected) {
	return {
		phone: account.phone,
		lid: account.lid,
		device: account.device,
		jid: pnJid(account.phone, account.device),
		lid_jid: lidJid(account.lid, account.device),
		connected,
		prekeys: account.preKeys.length
	}
}

/**
 * Store an `encrypt set` prekey upload: `<registration> <type> <identity> <list><key>…</list> <skey>`.
 * @param {Account} account
 * @param {import('baileys').BinaryNode} iq
 * @returns {number} how many new one-time prekeys were added
 */
export function storeUpload(account, iq) {
	const registration = getBinaryNodeChildBuffer(iq, 'registration')
	const identity = getBinaryNodeChildBuffer(iq, 'identity')
	const skey = getBinaryNodeChild(iq, 'skey')
	if (!registration || !identity || !skey) throw new Error('prekey upload without registration/identity/skey')
	account.bundle = {
		registrationId: readUintBE(registration),
		identity: Buffer.from(identity),
		signedPreKey: parseSignedPreKey(skey)
	}
	const known = new Set(account.preKeys.map(k => k.id))
	let added = 0
	for (const key of getBinaryNodeChildren(getBinaryNodeChild(iq, 'list'), 'key')) {
		const id = getBinaryNodeChildBuffer(key, 'id')
		const value = getBinaryNodeChildBuffer(key, 'value')
		if (!id || !value) continue
		const keyId = readUintBE(id)
		if (known.has(keyId)) continue
		account.preKeys.push({ id: keyId, public: Buffer.from(value) })
		known.add(keyId)
		added++
	}
	return added
}

/**
 * Parse `<skey><id/><value/><signature/></skey>`.
 * @param {import('baileys').BinaryNode} skey
 */
export function parseSignedPreKey(skey) {
	const id = getBinaryNodeChildBuffer(skey, 'id')
	const value = getBinaryNodeChildBuffer(skey, 'value')
	const signature = getBinaryNodeChildBuffer(skey, 'signature')
	if (!id || !value || !signature) throw new Error('malformed <skey>')
	return { id: readUintBE(id), public: Buffer.from(value), signature: Buffer.from(signature) }
}
