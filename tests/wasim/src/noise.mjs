// Noise_XX_25519_AESGCM_SHA256, responder side, as WhatsApp's server runs it, plus the transport framing.
// Baileys' own makeNoiseHandler is initiator-only, so this mirrors it from the other end using Baileys'
// exported primitives (same hash/HKDF/GCM conventions by construction).
import { proto, Curve, aesEncryptGCM, aesDecryptGCM, hkdf, sha256, NOISE_MODE, NOISE_WA_HEADER } from 'baileys'

/** Largest frame the u24 length prefix can express. */
const MAX_FRAME = 0xffffff

/** GCM IV: 8 zero bytes followed by the big-endian u32 counter. */
function ivFor(counter) {
	const iv = Buffer.alloc(12)
	iv.writeUInt32BE(counter, 8)
	return iv
}

/** Prefix bytes with their u24 big-endian length. */
export function frame(/** @type {Uint8Array} */ data) {
	if (data.length > MAX_FRAME) throw new Error(`frame too large: ${data.length}`)
	const header = Buffer.from([(data.length >> 16) & 0xff, (data.length >> 8) & 0xff, data.length & 0xff])
	return Buffer.concat([header, data])
}

/**
 * Reassembles client frames from WebSocket messages. The client's very first bytes are an optional
 * "ED" routing prefix (`ED 00 01 <u24 len> <routing info>`) and the `WA 06 03` intro; after that the
 * stream is u24-length-prefixed frames, and a WS message may carry several frames or part of one.
 */
export class FrameReader {
	#buf = Buffer.alloc(0)
	#introDone = false

	/**
	 * @param {Uint8Array} chunk
	 * @returns {Buffer[]} complete frames
	 * @throws on a malformed intro
	 */
	push(chunk) {
		this.#buf = this.#buf.length ? Buffer.concat([this.#buf, chunk]) : Buffer.from(chunk)
		if (!this.#introDone && !this.#consumeIntro()) return []
		const frames = []
		while (this.#buf.length >= 3) {
			const len = (this.#buf[0] << 16) | (this.#buf[1] << 8) | this.#buf[2]
			if (this.#buf.length < 3 + len) break
			frames.push(Buffer.from(this.#buf.subarray(3, 3 + len)))
			this.#buf = this.#buf.subarray(3 + len)
		}
		return frames
	}

	/** @returns {boolean} true once the intro has been consumed; false if more bytes are needed */
	#consumeIntro() {
		let offset = 0
		if (this.#buf.length >= 1 && this.#buf[0] === 0x45) {
			// "ED" + 2 bytes + u24 length + routing info
			if (this.#buf.length < 7) return false
			if (this.#buf[1] !== 0x44) throw new Error('malformed routing prefix')
			const len = (this.#buf[4] << 16) | (this.#buf[5] << 8) | this.#buf[6]
			offset = 7 + len
		}
		if (this.#buf.length < offset + NOISE_WA_HEADER.length) return false
		if (!this.#buf.subarray(offset, offset + NOISE_WA_HEADER.length).equals(NOISE_WA_HEADER)) {
			throw new Error('bad connection intro (expected WA 06 03)')
		}
		this.#buf = this.#buf.subarray(offset + NOISE_WA_HEADER.length)
		this.#introDone = true
		return true
	}
}

/** Responder half of the handshake and, once finished, the transport cipher. */
export class NoiseResponder {
	#hash
	#salt
	#key
	#counter = 0
	/** @type {{ public: Buffer, private: Buffer } | undefined} */
	#ephemeral
	/** @type {{ key: Buffer, n: number } | undefined} */ #tx
	/** @type {{ key: Buffer, n: number } | undefined} */ #rx

	constructor() {
		const mode = Buffer.from(NOISE_MODE)
		this.#hash = mode.length === 32 ? mode : sha256(mode)
		this.#salt = this.#hash
		this.#key = this.#hash
		this.#authenticate(NOISE_WA_HEADER)
	}

	get transportReady() {
		return !!this.#tx
	}

	#authenticate(/** @type {Uint8Array} */ data) {
		this.#hash = sha256(Buffer.concat([this.#hash, data]))
	}

	#encryptHandshake(/** @type {Uint8Array} */ plaintext) {
		const ct = aesEncryptGCM(plaintext, this.#key, ivFor(this.#counter++), this.#hash)
		this.#authenticate(ct)
		return ct
	}

	#decryptHandshake(/** @type {Uint8Array} */ ciphertext) {
		const pt = aesDecryptGCM(ciphertext, this.#key, ivFor(this.#counter++), this.#hash)
		this.#authenticate(ciphertext)
		return pt
	}

	#mixIntoKey(/** @type {Uint8Array} */ dh) {
		const out = Buffer.from(hkdf(Buffer.from(dh), 64, { salt: this.#salt, info: '' }))
		this.#salt = out.subarray(0, 32)
		this.#key = out.subarray(32)
		this.#counter = 0
	}

	/**
	 * Handle the client's first frame (HandshakeMessage.clientHello) and build the serverHello frame.
	 * @param {Buffer} frameBytes
	 * @param {{ public: Buffer, private: Buffer }} staticKey the simulator's Noise static key pair
	 * @param {Buffer} certChain encoded proto.CertChain whose leaf carries staticKey.public
	 */
	serverHello(frameBytes, staticKey, certChain) {
		const clientEphemeral = proto.HandshakeMessage.decode(frameBytes).clientHello?.ephemeral
		if (!clientEphemeral || clientEphemeral.length !== 32) throw new Error('clientHello without a 32-byte ephemeral')
		this.#authenticate(clientEphemeral)
		this.#ephemeral = Curve.generateKeyPair()
		this.#authenticate(this.#ephemeral.public)
		this.#mixIntoKey(Curve.sharedKey(this.#ephemeral.private, clientEphemeral))
		const encStatic = this.#encryptHandshake(staticKey.public)
		this.#mixIntoKey(Curve.sharedKey(staticKey.private, clientEphemeral))
		const payload = this.#encryptHandshake(certChain)
		return Buffer.from(
			proto.HandshakeMessage.encode({ serverHello: { ephemeral: this.#ephemeral.public, static: encStatic, payload } }).finish()
		)
	}

	/**
	 * Handle HandshakeMessage.clientFinish: learn the client's Noise static key and its ClientPayload,
	 * then split the transport keys.
	 * @param {Buffer} frameBytes
	 * @returns {{ clientStatic: Buffer, payload: proto.ClientPayload }}
	 */
	clientFinish(frameBytes) {
		if (!this.#ephemeral) throw new Error('clientFinish before clientHello')
		const finish = proto.HandshakeMessage.decode(frameBytes).clientFinish
		if (!finish?.static || !finish.payload) throw new Error('clientFinish missing static or payload')
		const clientStatic = Buffer.from(this.#decryptHandshake(finish.static))
		this.#mixIntoKey(Curve.sharedKey(this.#ephemeral.private, clientStatic))
		const payload = proto.ClientPayload.decode(this.#decryptHandshake(finish.payload))
		const keys = Buffer.from(hkdf(Buffer.alloc(0), 64, { salt: this.#salt, info: '' }))
		// The client encrypts with keys[0:32] and decrypts with keys[32:64]; the server mirrors that.
		this.#rx = { key: keys.subarray(0, 32), n: 0 }
		this.#tx = { key: keys.subarray(32), n: 0 }
		return { clientStatic, payload }
	}

	/** Encrypt one transport frame's plaintext (an encoded binary node). */
	encrypt(/** @type {Uint8Array} */ plaintext) {
		if (!this.#tx) throw new Error('transport not established')
		return aesEncryptGCM(plaintext, this.#tx.key, ivFor(this.#tx.n++), Buffer.alloc(0))
	}

	/** Decrypt one transport frame. */
	decrypt(/** @type {Uint8Array} */ ciphertext) {
		if (!this.#rx) throw new Error('transport not established')
		return aesDecryptGCM(ciphertext, this.#rx.key, ivFor(this.#rx.n++), Buffer.alloc(0))
	}
}
