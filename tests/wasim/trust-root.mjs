// Test-only preload for a process that runs Baileys against wasim:
//
//   WA_SIM_ROOT_PUB=<root_pub hex> node --import /abs/path/tests/wasim/trust-root.mjs main.js
//
// Baileys pins WhatsApp's Noise root key in the exported, mutable WA_CERT_DETAILS.PUBLIC_KEY. Replacing it with the
// simulator's root makes Baileys accept the simulator's self-signed certificate chain. The replacement is done by a
// module-load hook (trust-root-hooks.mjs) that appends one assignment to Baileys' `Defaults/index.js` as it loads,
// rather than by importing Baileys here: a preload that imports Baileys would load it before the program could
// register load hooks of its own (the bridge registers one that holds delivery receipts), and it would have to guess
// which copy of Baileys the program will use. The hook applies to every copy this process loads.
// Without WA_SIM_ROOT_PUB this does nothing.
import { register } from 'node:module'

const rootPub = process.env.WA_SIM_ROOT_PUB
if (rootPub) {
	if (!/^[0-9a-fA-F]{64}$/.test(rootPub)) throw new Error('trust-root: WA_SIM_ROOT_PUB must be 64 hex characters')
	register('./trust-root-hooks.mjs', import.meta.url, { data: { rootPub: rootPub.toLowerCase() } })
}
