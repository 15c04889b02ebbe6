// Linking a new companion device, as the server and the user's phone do it together:
//  - QR: send <pair-device> refs; the phone "scans" the QR (ref, noise key, identity key, adv secret).
//  - Pairing code: the companion sends companion_hello with its ephemeral key wrapped under the code; the
//    phone "types" the code, answers with its own wrapped ephemeral, and both derive the adv secret.
// Both end in <pair-success> (ADV device identity signed by the account key, HMAC'd with the adv secret),
// the companion's <pair-device-sign> answer, and <stream:error code=515> so the client logs in afresh.
import { randomBytes } from 'node:crypto'
import libsignal from 'libsignal'
import {
	proto,
	Curve,
	aesEncryptCTR,
	aesDecryptCTR,
	aesDecryptGCM,
	hkdf,
	hmacSign,
	derivePairingCodeKey,
	getBinaryNodeChild,
	getBinaryNodeChildBuffer,
	WA_ADV_ACCOUNT_SIG_PREFIX,
	WA_ADV_DEVICE_SIG_PREFIX
} from 'baileys'
import { createAccount } from './accounts.mjs'
import { withKeyType } from './contacts.mjs'
import { SimError, badRequest, conflict, notConnected } from './errors.mjs'
import { S_WHATSAPP_NET, pnJid, lidJid, newStanzaId, unixNow, decodeJid, iqResult } from './wire.mjs'

/** Real servers send six refs: the QR rotates through them (60 s, then 20 s each). */
const QR_REF_COUNT = 6
/** How long /pairing-code/enter waits for the companion's companion_finish. */
const COMPANION_FINISH_TIMEOUT_MS = 15_000

/**
 * Registration handshake: remember the companion's keys and send the QR refs.
 * @param {import('./server.mjs').Simulator} sim
 * @param {import('./server.mjs').Connection} conn
 * @param {import('baileys').proto.ClientPayload.IDevicePairingRegistrationData} pairingData
 */
export async function startRegistration(sim, conn, pairingData) {
	conn.kind = 'registration'
	conn.stage = 'pairing'
	conn.pairing.identity = pairingData.eIdent ? Buffer.from(pairingData.eIdent) : undefined
	sim.emit('handshake', { conn_id: conn.id, kind: 'registration' })
	conn.qrRefs = Array.from({ length: QR_REF_COUNT }, () => `2@wasim${randomBytes(12).toString('base64url')}`)
	conn.send({
		tag: 'iq',
		attrs: { from: S_WHATSAPP_NET, type: 'set', id: newStanzaId('pd'), xmlns: 'md' },
		content: [
			{ tag: 'pair-device', attrs: {}, content: conn.qrRefs.map(ref => ({ tag: 'ref', attrs: {}, content: Buffer.from(ref) })) }
		]
	})
	sim.emit('qr.refs_sent', { conn_id: conn.id, refs: conn.qrRefs.length })
}

/**
 * Parse Baileys' QR string: `<ref>,<noise pub b64>,<identity pub b64>,<adv secret b64>[,<platform>]`,
 * optionally as the https://wa.me/settings/linked_devices#… link.
 * @param {string} qr
 */
export function parseQr(qr) {
	const data = qr.includes('#') ? qr.slice(qr.indexOf('#') + 1) : qr
	const [ref, noise, identity, adv] = data.split(',')
	const noiseKey = Buffer.from(noise ?? '', 'base64')
	const identityKey = Buffer.from(identity ?? '', 'base64')
	const advSecret = Buffer.from(adv ?? '', 'base64')
	if (!ref || noiseKey.length !== 32 || identityKey.length !== 32 || advSecret.length !== 32) {
		throw badRequest('qr is not a WhatsApp pairing QR (ref,noiseKey,identityKey,advSecret)')
	}
	return { ref, noiseKey, identityKey, advSecret }
}

/**
 * The phone scans a QR: pair-success to the connection whose Noise key is in it.
 * @param {import('./server.mjs').Simulator} sim
 * @param {{ qr: string, phone: string, lid: string, device?: number, name?: string | null }} req
 */
export function scanQr(sim, { qr, phone, lid, device, name }) {
	const { ref, noiseKey, identityKey, advSecret } = parseQr(qr)
	const conn = [...sim.connections.values()].find(c => c.stage === 'pairing' && c.clientStatic?.equals(noiseKey))
	if (!conn) throw notConnected('no connection waiting for pairing has the Noise key in that QR')
	if (!conn.qrRefs.includes(ref)) throw badRequest('the QR ref was not issued to that connection')
	return sendPairSuccess(sim, conn, { companionIdentity: identityKey, advSecret, phone, lid, device, name, method: 'qr' })
}

/**
 * companion_hello: the companion asked for a pairing code for `jid`. Keep its wrapped ephemeral key.
 * @param {import('./server.mjs').Simulator} sim
 * @param {import('./server.mjs').Connection} conn
 * @param {import('baileys').BinaryNode} iq
 * @param {import('baileys').BinaryNode} reg the <link_code_companion_reg> child
 */
export function onCompanionHello(sim, conn, iq, reg) {
	const phone = decodeJid(reg.attrs.jid)?.user
	const wrapped = getBinaryNodeChildBuffer(reg, 'link_code_pairing_wrapped_companion_ephemeral_pub')
	if (!phone || !wrapped || wrapped.length !== 80) throw new Error('malformed companion_hello')
	const ref = Buffer.from(newStanzaId('lcref'))
	conn.pairing.hello = { phone, wrapped: Buffer.from(wrapped), ref, at: Date.now() }
	conn.send(iqResult(iq, [{ tag: 'link_code_companion_reg', attrs: {}, content: [{ tag: 'link_code_pairing_ref', attrs: {}, content: ref }] }]))
	sim.emit('pairing_code.hello', { conn_id: conn.id, phone })
}

/**
 * The phone types the code: unwrap the companion's ephemeral key, send ours (wrapped the same way) with the
 * primary identity, then wait for companion_finish and answer it with pair-success.
 * @param {import('./server.mjs').Simulator} sim
 * @param {{ code: string, phone: string, lid: string, device?: number, name?: string | null }} req
 */
export async function enterPairingCode(sim, { code, phone, lid, device, name }) {
	const conn = [...sim.connections.values()]
		.filter(c => c.stage === 'pairing' && c.pairing.hello?.phone === phone)
		.sort((a, b) => a.pairing.hello.at - b.pairing.hello.at)
		.at(-1)
	if (!conn) throw notConnected(`no connection sent companion_hello for ${phone}`)
	if (conn.pairing.link) throw conflict('a pairing code is already being entered for that connection')
	const { wrapped, ref } = conn.pairing.hello
	const companionEphemeral = aesDecryptCTR(wrapped.subarray(48, 80), await derivePairingCodeKey(code, wrapped.subarray(0, 32)), wrapped.subarray(32, 48))
	const primaryEphemeral = Curve.generateKeyPair()
	const primaryIdentity = Curve.generateKeyPair()
	const salt = randomBytes(32)
	const iv = randomBytes(16)
	const wrappedPrimary = Buffer.concat([salt, iv, aesEncryptCTR(primaryEphemeral.public, await derivePairingCodeKey(code, salt), iv)])

	const finished = new Promise((resolve, reject) => {
		const timer = setTimeout(() => reject(new SimError(408, 'timeout', 'the companion did not finish the pairing-code exchange')), COMPANION_FINISH_TIMEOUT_MS)
		conn.pairing.link = {
			companionEphemeral,
			primaryEphemeral,
			primaryIdentity,
			account: { phone, lid, device, name },
			resolve: (/** @type {unknown} */ v) => (clearTimeout(timer), resolve(v)),
			reject: (/** @type {unknown} */ e) => (clearTimeout(timer), reject(e))
		}
		conn.ws.once('close', () => conn.pairing.link?.reject(notConnected('the companion disconnected during pairing')))
	})
	conn.send({
		tag: 'notification',
		attrs: { from: S_WHATSAPP_NET, type: 'link_code_companion_reg', id: newStanzaId('lc'), t: unixNow() },
		content: [
			{
				tag: 'link_code_companion_reg',
				attrs: {},
				content: [
					{ tag: 'link_code_pairing_ref', attrs: {}, content: ref },
					{ tag: 'primary_identity_pub', attrs: {}, content: primaryIdentity.public },
					{ tag: 'link_code_pairing_wrapped_primary_ephemeral_pub', attrs: {}, content: wrappedPrimary }
				]
			}
		]
	})
	try {
		return await finished
	} finally {
		conn.pairing.link = undefined
	}
}

/**
 * companion_finish: decrypt the companion's key bundle (this fails if the typed code was wrong), derive the
 * adv secret exactly as the companion does, and send pair-success.
 * @param {import('./server.mjs').Simulator} sim
 * @param {import('./server.mjs').Connection} conn
 * @param {import('baileys').BinaryNode} reg the <link_code_companion_reg stage=companion_finish> child
 */
export function onCompanionFinish(sim, conn, reg) {
	const link = conn.pairing.link
	if (!link) throw new Error('companion_finish without a pairing code entered')
	try {
		const bundle = getBinaryNodeChildBuffer(reg, 'link_code_pairing_wrapped_key_bundle')
		const companionIdentity = getBinaryNodeChildBuffer(reg, 'companion_identity_public')
		if (!bundle || !companionIdentity) throw badRequest('malformed companion_finish')
		const ephemeralShared = Curve.sharedKey(link.primaryEphemeral.private, link.companionEphemeral)
		const bundleKey = hkdf(ephemeralShared, 32, { salt: bundle.subarray(0, 32), info: 'link_code_pairing_key_bundle_encryption_key' })
		let plain
		try {
			plain = aesDecryptGCM(bundle.subarray(44), bundleKey, bundle.subarray(32, 44), Buffer.alloc(0))
		} catch {
			throw new SimError(400, 'bad_code', 'the pairing code does not match the one the companion showed')
		}
		const random = plain.subarray(64, 96)
		const identityShared = Curve.sharedKey(link.primaryIdentity.private, companionIdentity)
		const advSecret = Buffer.from(hkdf(Buffer.concat([ephemeralShared, identityShared, random]), 32, { info: 'adv_secret' }))
		const account = sendPairSuccess(sim, conn, {
			...link.account,
			companionIdentity: Buffer.from(companionIdentity),
			advSecret,
			method: 'code'
		})
		link.resolve(account)
	} catch (err) {
		link.reject(err)
	}
}

/**
 * Create (or replace) the account and send <pair-success>.
 * @param {import('./server.mjs').Simulator} sim
 * @param {import('./server.mjs').Connection} conn
 * @param {{ companionIdentity: Buffer, advSecret: Buffer, phone: string, lid: string, device?: number, name?: string | null, method: 'qr'|'code' }} p
 * @returns {import('./accounts.mjs').Account}
 */
function sendPairSuccess(sim, conn, { companionIdentity, advSecret, phone, lid, device, name, method }) {
	const { state } = sim
	const previous = state.accounts.get(phone)
	const lidOwner = state.accountByLid(lid)
	if (lidOwner && lidOwner.phone !== phone) throw conflict(`lid ${lid} belongs to account ${lidOwner.phone}`)
	if (state.contactByUser(lid) || state.contactByUser(phone)) throw conflict('that phone or lid is a simulated contact')
	device ??= previous ? previous.device + 1 : 1

	if (previous) {
		// One companion per phone here: the new pairing replaces the old device, as if it had been removed.
		for (const old of sim.openConnectionsFor(phone)) {
			sim.emit('disconnect', { conn_id: old.id, account: phone, code: 401, mode: 'stream_error' })
			old.endWith({ tag: 'stream:error', attrs: { code: '401' } })
		}
		state.deleteAccount(phone)
	}
	const account = createAccount({ phone, lid, device, name, companionIdentity })
	state.accounts.set(phone, account)
	state.changed()

	const details = Buffer.from(
		proto.ADVDeviceIdentity.encode({
			rawId: randomBytes(4).readUInt32BE() >>> 1,
			timestamp: Math.floor(Date.now() / 1000),
			keyIndex: 1, // Baileys calls keyIndex.toString(): it must be set
			accountType: proto.ADVEncryptionType.E2EE,
			deviceType: proto.ADVEncryptionType.E2EE
		}).finish()
	)
	const accountSignature = Curve.sign(account.accountKey.private, Buffer.concat([WA_ADV_ACCOUNT_SIG_PREFIX, details, companionIdentity]))
	const signed = Buffer.from(
		proto.ADVSignedDeviceIdentity.encode({ details, accountSignatureKey: account.accountKey.public, accountSignature }).finish()
	)
	const container = proto.ADVSignedDeviceIdentityHMAC.encode({ details: signed, hmac: hmacSign(signed, advSecret) }).finish()

	conn.account = phone
	conn.device = device
	conn.stage = 'paired'
	conn.pairing.sign = { details, companionIdentity }
	conn.send({
		tag: 'iq',
		attrs: { from: S_WHATSAPP_NET, type: 'set', id: newStanzaId('ps'), xmlns: 'md' },
		content: [
			{
				tag: 'pair-success',
				attrs: {},
				content: [
					{ tag: 'device-identity', attrs: {}, content: Buffer.from(container) },
					{ tag: 'platform', attrs: { name: 'android' } },
					{ tag: 'device', attrs: { jid: pnJid(phone, device), lid: lidJid(lid, device) } },
					// Baileys takes creds.me.name from <biz name>; it is the only name pair-success can carry.
					...(name ? [{ tag: 'biz', attrs: { name } }] : [])
				]
			}
		]
	})
	sim.emit('pair.success', { conn_id: conn.id, phone, lid, device, method })
	return account
}

/**
 * The companion's answer to pair-success: check its device signature over the ADV details (with a real
 * signature check, not Baileys' permissive Curve.verify), then make it restart and log in.
 * @param {import('./server.mjs').Simulator} sim
 * @param {import('./server.mjs').Connection} conn
 * @param {import('baileys').BinaryNode} signNode <pair-device-sign>
 */
export function onPairDeviceSign(sim, conn, signNode) {
	const sign = conn.pairing.sign
	const account = conn.account ? sim.state.accounts.get(conn.account) : undefined
	if (!sign || !account) throw new Error('pair-device-sign without a pair-success')
	let valid = false
	try {
		const identityNode = getBinaryNodeChild(signNode, 'device-identity')
		const signedIdentity = proto.ADVSignedDeviceIdentity.decode(/** @type {Uint8Array} */ (identityNode?.content))
		const message = Buffer.concat([WA_ADV_DEVICE_SIG_PREFIX, sign.details, sign.companionIdentity, account.accountKey.public])
		valid =
			!!signedIdentity.deviceSignature &&
			libsignal.curve.verifySignature(withKeyType(sign.companionIdentity), message, Buffer.from(signedIdentity.deviceSignature)) === true
	} catch {
		valid = false
	}
	sim.emit('pair.device_signed', { conn_id: conn.id, phone: account.phone, valid })
	conn.pairing.sign = undefined
	conn.endWith({ tag: 'stream:error', attrs: { code: '515' } })
}
