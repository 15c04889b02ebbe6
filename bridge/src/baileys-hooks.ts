/**
 * A Node module-load hook that gives Baileys the two seams it lacks, as small in-memory rewrites of its source at
 * load time: a way to hold delivery receipts, and a way to handle a chat's messages in the order they arrived.
 *
 * Receipts (`Socket/messages-send.js`): WhatsApp stops redelivering a message once the device has sent its delivery
 * receipt, and Baileys sends that receipt (`sendReceipt`) before it emits the message. For a relay that must not lose
 * a message, the receipt may only leave once the connector has made the message durable (DESIGN section 1), which is
 * after the emit. Baileys offers no config option for it: `sendReceipt` and the `sendNode` it calls are closures, the
 * frames on the WebSocket are already Noise-encrypted (and must go out in order), and its `makeSignalRepository` seam
 * only sees decryption. So the one line of `sendReceipt` that sends the stanza asks `config.receiptGate(node,
 * sendNode)` first (`receipts.ts`).
 *
 * Order (`Socket/messages-recv.js`): each message awaits key-store reads of its own before it takes the message mutex,
 * and offline messages are handled behind live ones, so a chat's messages can be emitted out of order
 * (`message-order.ts`). Three lines change: `processNode` takes a ticket for each message stanza as it is accepted
 * (`config.messageOrder.arrive`), the two places that hand a message to `handleMessage` mark it finished when it
 * returns (`wrap`), and `handleMessage` enters the mutex in turn (`inTurn`).
 *
 * Without `config.receiptGate` or `config.messageOrder` each changed line behaves as before. Every rewrite is checked
 * against the exact text of the pinned Baileys (7.0.0-rc14): if a text is not found exactly once, loading fails with
 * a message that says so, rather than running without the guarantee. Each patched module sets a `globalThis` marker,
 * so the bridge can refuse to start when the hook did not run at all (`HOOK_MARKERS`).
 *
 * Registered by `main.ts` (`module.register`) before Baileys is imported.
 */

export interface Rewrite {
	original: string
	replacement: string
}

export interface Patch {
	/** the end of the module's path */
	file: string
	/** what the rewrite gives, for the error that names a mismatch */
	purpose: string
	rewrites: Rewrite[]
	/** the `globalThis` flag the patched module sets */
	marker: string
}

export const RECEIPTS: Patch = {
	file: '/baileys/lib/Socket/messages-send.js',
	purpose: 'receipts could not be held until messages are durable',
	marker: '__waRelayReceiptGate',
	rewrites: [
		{
			original: `        logger.debug({ attrs: node.attrs, messageIds }, 'sending receipt for messages');
        await sendNode(node);
`,
			replacement: `        logger.debug({ attrs: node.attrs, messageIds }, 'sending receipt for messages');
        await (config.receiptGate ? config.receiptGate(node, sendNode) : sendNode(node));
`
		}
	]
}

export const ORDER: Patch = {
	file: '/baileys/lib/Socket/messages-recv.js',
	purpose: "a chat's messages could not be kept in the order they arrived",
	marker: '__waRelayMessageOrder',
	rewrites: [
		{
			original: `        const isOffline = !!node.attrs.offline;
`,
			replacement: `        if (type === 'message') config.messageOrder?.arrive(node);
        const isOffline = !!node.attrs.offline;
`
		},
		{
			original: `        ['message', handleMessage],
`,
			replacement: `        ['message', config.messageOrder ? config.messageOrder.wrap(handleMessage) : handleMessage],
`
		},
		{
			original: `        await processNode('message', node, 'processing message', handleMessage);
`,
			replacement: `        await processNode('message', node, 'processing message', config.messageOrder ? config.messageOrder.wrap(handleMessage) : handleMessage);
`
		},
		{
			original: `            await messageMutex.mutex(async () => {
                await decrypt();
`,
			replacement: `            await (config.messageOrder ? config.messageOrder.inTurn(node, messageMutex) : messageMutex).mutex(async () => {
                await decrypt();
`
		}
	]
}

export const PATCHES: Patch[] = [RECEIPTS, ORDER]
/** the flags the bridge checks at start: each patched module ran */
export const HOOK_MARKERS = PATCHES.map(p => p.marker)

/** the patched source, or an error naming what did not match */
export function patchSource(patch: Patch, source: string): string {
	let out = source
	for (const { original, replacement } of patch.rewrites) {
		const first = out.indexOf(original)
		if (first < 0 || out.indexOf(original, first + 1) >= 0) {
			throw new Error(
				`wa-relay bridge: ${patch.file} does not contain this text exactly once, so ${patch.purpose}; ` +
					`install the pinned baileys (7.0.0-rc14):\n${original}`
			)
		}
		out = out.slice(0, first) + replacement + out.slice(first + original.length)
	}
	return `${out}\nglobalThis.${patch.marker} = true;\n`
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
	const patch = PATCHES.find(p => url.endsWith(p.file))
	if (!patch || result.source == null) return result
	const text = typeof result.source === 'string' ? result.source : Buffer.from(result.source as Uint8Array).toString('utf8')
	return { ...result, source: patchSource(patch, text) }
}
