// Test-only preload for a process that runs Baileys against wasim:
//
//   WA_SIM_ROOT_PUB=<root_pub hex> node --import /abs/path/tests/wasim/trust-root.mjs main.js
//
// Baileys pins WhatsApp's Noise root key in the exported, mutable WA_CERT_DETAILS.PUBLIC_KEY. Replacing
// it with the simulator's root makes Baileys accept the simulator's self-signed certificate chain. It must
// patch the module instance the program itself imports, so `baileys` is resolved from the main script's
// location (process.argv[1]), not from this file (which would find tests/wasim's own copy).
// WA_SIM_BAILEYS_PATH (a file path or directory inside the package) overrides that resolution.
// Without WA_SIM_ROOT_PUB this does nothing.
import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'
import { resolve as resolvePath } from 'node:path'

const rootPub = process.env.WA_SIM_ROOT_PUB
if (rootPub) {
	if (!/^[0-9a-fA-F]{64}$/.test(rootPub)) throw new Error('trust-root: WA_SIM_ROOT_PUB must be 64 hex characters')
	const baileys = await import(pathToFileURL(resolveBaileys()).href)
	if (!baileys.WA_CERT_DETAILS?.PUBLIC_KEY) throw new Error('trust-root: this baileys has no WA_CERT_DETAILS.PUBLIC_KEY')
	baileys.WA_CERT_DETAILS.PUBLIC_KEY = Buffer.from(rootPub, 'hex')
}

/** @returns {string} absolute path of the baileys entry point the main program will load */
function resolveBaileys() {
	const override = process.env.WA_SIM_BAILEYS_PATH
	const errors = []
	const bases = []
	if (process.argv[1]) bases.push(resolvePath(process.argv[1]))
	if (override) bases.push(resolvePath(override, 'index.js'))
	for (const base of bases) {
		try {
			// ESM resolution ("import" condition), the same one the program's `import 'baileys'` uses.
			return createRequire(base).resolve('baileys')
		} catch (err) {
			errors.push(`${base}: ${err instanceof Error ? err.message : err}`)
		}
	}
	if (override) {
		// A path to baileys' entry file itself.
		return resolvePath(override)
	}
	throw new Error(`trust-root: cannot resolve baileys from the main script (${errors.join('; ')}); set WA_SIM_BAILEYS_PATH`)
}
