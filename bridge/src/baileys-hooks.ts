/**
 * A Node module-load hook that gives Baileys one seam it lacks: a way to hold delivery receipts.
 *
 * WhatsApp stops redelivering a message once the device has sent its delivery receipt, and Baileys sends that receipt
 * (`sendReceipt` in `Socket/messages-send.js`) before it emits the message. For a relay that must not lose a message,
 * the receipt may only leave once the connector has made the message durable (DESIGN section 1), which is after the
 * emit. Baileys offers no config option for it: `sendReceipt` and the `sendNode` it calls are closures, the frames on
 * the WebSocket are already Noise-encrypted (and must go out in order), and its `makeSignalRepository` seam only sees
 * decryption. So, at load time and in memory only, this hook rewrites the one line of `sendReceipt` that sends the
 * stanza to ask `config.receiptGate(node, sendNode)` first, when the socket config has one. Nothing else changes:
 * without a gate the line behaves as before. The rewrite is checked against the exact text of the pinned Baileys
 * (7.0.0-rc14): if the text is not found exactly once, loading fails with a message that says so, rather than running
 * with receipts that are not held. The patched module sets `globalThis.__waRelayReceiptGate`, so the bridge can refuse
 * to start when the hook did not run at all.
 *
 * Registered by `main.ts` (`module.register`) before Baileys is imported.
 */

export const PATCHED_FILE = '/baileys/lib/Socket/messages-send.js'
export const ORIGINAL = `        logger.debug({ attrs: node.attrs, messageIds }, 'sending receipt for messages');
        await sendNode(node);
`
export const REPLACEMENT = `        logger.debug({ attrs: node.attrs, messageIds }, 'sending receipt for messages');
        await (config.receiptGate ? config.receiptGate(node, sendNode) : sendNode(node));
`
const MARKER = '\nglobalThis.__waRelayReceiptGate = true;\n'

/** the patched source, or an error naming what did not match */
export function patchSource(source: string): string {
	const first = source.indexOf(ORIGINAL)
	if (first < 0 || source.indexOf(ORIGINAL, first + 1) >= 0) {
		throw new Error(
			`wa-relay bridge: ${PATCHED_FILE} does not contain the sendReceipt line this bridge was written for exactly once; ` +
				'receipts could not be held until messages are durable. Install the pinned baileys (7.0.0-rc14).'
		)
	}
	return source.slice(0, first) + REPLACEMENT + source.slice(first + ORIGINAL.length) + MARKER
}

interface LoadContext {
	format?: string
	[key: string]: unknown
}
interface LoadResult {
	format?: string | null
	source?: string | ArrayBuffer | Uint8Array | null
	shortCircuit?: boolean
}
type NextLoad = (url: string, context?: LoadContext) => Promise<LoadResult>

export async function load(url: string, context: LoadContext, nextLoad: NextLoad): Promise<LoadResult> {
	const result = await nextLoad(url, context)
	if (!url.endsWith(PATCHED_FILE) || result.source == null) return result
	const text = typeof result.source === 'string' ? result.source : Buffer.from(result.source as Uint8Array).toString('utf8')
	return { ...result, source: patchSource(text) }
}
