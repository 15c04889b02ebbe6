// The simulator's own Noise certificate chain: root -> intermediate -> leaf, where the leaf carries the
// simulator's Noise static public key. Baileys only accepts it once the Baileys process trusts our root
// (trust-root.mjs patches WA_CERT_DETAILS.PUBLIC_KEY); no WhatsApp certificate bytes are involved.
import { proto, Curve } from 'baileys'

/** Baileys requires intermediate.issuerSerial === WA_CERT_DETAILS.SERIAL (0). */
const ROOT_SERIAL = 0
const INTERMEDIATE_SERIAL = 1
const LEAF_SERIAL = 2
const YEAR_SECONDS = 365 * 24 * 3600

/**
 * @param {{ public: Buffer, private: Buffer }} rootKey
 * @param {Buffer} staticPublic the Noise static key the leaf certifies
 * @returns {Buffer} encoded proto.CertChain
 */
export function buildCertChain(rootKey, staticPublic) {
	const intermediateKey = Curve.generateKeyPair()
	const Details = proto.CertChain.NoiseCertificate.Details
	const notBefore = Math.floor(Date.now() / 1000) - 3600
	const notAfter = notBefore + 10 * YEAR_SECONDS
	const intermediateDetails = Details.encode({
		serial: INTERMEDIATE_SERIAL,
		issuerSerial: ROOT_SERIAL,
		key: intermediateKey.public,
		notBefore,
		notAfter
	}).finish()
	const leafDetails = Details.encode({
		serial: LEAF_SERIAL,
		issuerSerial: INTERMEDIATE_SERIAL,
		key: staticPublic,
		notBefore,
		notAfter
	}).finish()
	return Buffer.from(
		proto.CertChain.encode({
			intermediate: { details: intermediateDetails, signature: Curve.sign(rootKey.private, intermediateDetails) },
			leaf: { details: leafDetails, signature: Curve.sign(intermediateKey.private, leafDetails) }
		}).finish()
	)
}
