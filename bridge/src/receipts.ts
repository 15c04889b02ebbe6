/**
 * Delivery receipts held until the connector says their messages are durable (DESIGN section 1).
 *
 * Baileys (through the hook in `baileys-hooks.ts`) hands every receipt stanza it is about to send to `gate`. Read and
 * played receipts go out at once. A delivery receipt (no `type`, or `inactive`, `sender`, `peer_msg`, `hist_sync`) is
 * held: `gate` returns at once, so Baileys goes on and emits the message, and the stanza is sent when the connector
 * calls `receipts.release` with every id it names (after the message's envelope reached SQS or the fsynced spool, or
 * after the connector decided the message is not published). If the socket closes first, held receipts are dropped:
 * WhatsApp never got them, so it delivers those messages again on the next login.
 *
 * Plaintext the decrypted-message buffer stored for a held message (`decrypt-buffer.ts`) is attributed to that
 * message here, because Baileys decrypts a message and then receipts it under one mutex; once the message is
 * released its plaintext is no longer needed and `onReleased` lets the buffer clear it.
 */
import type { BinaryNode } from 'baileys'

export type SendNode = (node: BinaryNode) => Promise<void>

/** receipt types that confirm delivery to the sender and must wait for durability */
const IMMEDIATE_TYPES = new Set(['read', 'read-self', 'played', 'retry'])

interface Held {
	node: BinaryNode
	send: SendNode
	/** ids still waiting for release */
	waiting: Set<string>
	/** decrypted-message buffer entries of these messages */
	buffered: string[]
}

export interface ReceiptGateHooks {
	/** buffer entries to take along with the next held receipt (the messages Baileys just decrypted) */
	takeDecrypted(): string[]
	/** the messages of these buffer entries are durable downstream */
	onReleased(buffered: string[]): void
	/** a held receipt could not be sent (the socket closed meanwhile) */
	onSendError(err: unknown, ids: string[]): void
}

export function receiptIds(node: BinaryNode): string[] {
	const ids = node.attrs.id ? [node.attrs.id] : []
	const list = Array.isArray(node.content) ? node.content.find(c => c.tag === 'list') : undefined
	if (list && Array.isArray(list.content)) {
		for (const item of list.content) if (item.attrs?.id) ids.push(item.attrs.id)
	}
	return ids
}

export class ReceiptGate {
	/** held receipts by message id; a receipt naming several ids is listed under each, and one id may have several
	 * receipts (Baileys sends `hist_sync` after the delivery receipt of a history message) */
	private readonly byId = new Map<string, Held[]>()
	private readonly waiters = new Set<() => void>()
	private closed = false

	constructor(private readonly hooks: ReceiptGateHooks) {}

	/** the `receiptGate` of Baileys' socket config */
	gate = async (node: BinaryNode, send: SendNode): Promise<void> => {
		const type = node.attrs.type
		const ids = receiptIds(node)
		if ((type && IMMEDIATE_TYPES.has(type)) || !ids.length || this.closed) {
			if (!this.closed) await send(node)
			return
		}
		const held: Held = { node, send, waiting: new Set(ids), buffered: this.hooks.takeDecrypted() }
		for (const id of ids) {
			const list = this.byId.get(id)
			if (list) list.push(held)
			else this.byId.set(id, [held])
		}
	}

	/** send every held receipt whose ids are now all released; returns how many of `ids` were held */
	release(ids: string[]): number {
		let found = 0
		for (const id of ids) {
			const list = this.byId.get(id)
			if (!list) continue
			found++
			this.byId.delete(id)
			for (const held of list) {
				held.waiting.delete(id)
				if (!held.waiting.size) this.sendHeld(held)
			}
		}
		if (!this.byId.size) this.wake()
		return found
	}

	/** message ids whose receipts are held */
	get heldCount(): number {
		return this.byId.size
	}

	/** resolves true once nothing is held, or false after `ms` */
	async drained(ms: number): Promise<boolean> {
		if (!this.byId.size) return true
		let timer: NodeJS.Timeout | undefined
		const done = await Promise.race([
			new Promise<boolean>(resolve => {
				this.waiters.add(() => resolve(true))
			}),
			new Promise<boolean>(resolve => {
				timer = setTimeout(() => resolve(false), ms)
			})
		])
		clearTimeout(timer)
		return done
	}

	/** the socket closed: nothing held can be sent any more, and WhatsApp will deliver those messages again; returns
	 * the ids that were held */
	close(): string[] {
		this.closed = true
		const dropped = [...this.byId.keys()]
		this.byId.clear()
		this.wake()
		return dropped
	}

	private sendHeld(held: Held): void {
		if (held.buffered.length) this.hooks.onReleased(held.buffered)
		if (this.closed) return
		held.send(held.node).catch(err => this.hooks.onSendError(err, receiptIds(held.node)))
	}

	private wake(): void {
		for (const w of this.waiters) w()
		this.waiters.clear()
	}
}
