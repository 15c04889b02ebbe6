// The load hook of trust-root.mjs: make Baileys trust the simulator's Noise root (test-only).
const DEFAULTS = '/baileys/lib/Defaults/index.js'
let rootPub = ''

export async function initialize(data) {
	rootPub = data.rootPub
}

export async function load(url, context, nextLoad) {
	const result = await nextLoad(url, context)
	if (!url.endsWith(DEFAULTS) || result.source == null) return result
	const source = typeof result.source === 'string' ? result.source : Buffer.from(result.source).toString('utf8')
	if (!source.includes('export const WA_CERT_DETAILS')) {
		throw new Error(`trust-root: ${url} has no WA_CERT_DETAILS to replace`)
	}
	return { ...result, source: `${source}\nWA_CERT_DETAILS.PUBLIC_KEY = Buffer.from('${rootPub}', 'hex');\n` }
}
