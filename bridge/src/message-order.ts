/**
 * Per chat, Baileys handles incoming messages in the order they arrived on the socket.
 *
 * Why: Baileys decrypts, receipts and emits a message under one mutex (`messageMutex` in `Socket/messages-recv.js`),
 * but before taking it each message awaits key-store reads of its own (the LID mapping of its sender and, for a
 * message that names the sender's other address, a session migration). Those reads are calls to the connector and
 * from there to DynamoDB, so their latency varies: three messages a contact sent in a row can enter the mutex as 3,
 * 1, 2. Messages delivered from the offline queue after a login are handled one by one in the background, so a
 * message the contact sends live meanwhile overtakes them. Either way the chatbot sees the chat out of order, and
 * nothing downstream can repair it (the FIFO queue keeps the order it is given).
 *
 * `arrive` takes a ticket when Baileys accepts a message stanza (in `processNode`, synchronously with the socket's
 * frame, for live and offline stanzas alike); `inTurn` makes a message wait, just before the mutex, until every
 * earlier message of its chat has entered the mutex or finished; `wrap` marks a message finished whatever path it
 * took (an error before the mutex, an ignored `msmsg`). Messages of different chats never wait for each other.
 * A message waits at most `TURN_WAIT_MS` for an earlier one: past that the earlier one is stuck on something this
 * order cannot fix, and holding the chat longer would only delay it.
 *
 * The chat of a stanza is its `from` (the group for a group message, the contact for a direct one) with its
 * `recipient` (set on messages the account sent from another device). A contact who writes once by phone number
 * and once by LID has two keys here; the connector canonicalises those downstream, and ordering between the two
 * addressings is not attempted.
 *
 * Installed through `baileys-hooks.ts` (`config.messageOrder`); without it Baileys behaves as before.
 */
import type { BinaryNode } from 'baileys'
import type { Logger } from 'pino'

/** the longest a message waits for an earlier message of its chat to enter Baileys' message mutex */
export const TURN_WAIT_MS = 60_000

interface Ticket {
	chat: string
	/** resolved once this message entered the mutex or finished */
	passed: Promise<void>
	pass: () => void
	/** the previous message of the chat, when it arrived */
	after: Promise<void>
	done: boolean
}

interface Mutex {
	mutex<T>(code: () => Promise<T> | T): Promise<T>
}

type Handler = (node: BinaryNode, ...rest: never[]) => Promise<unknown>

function chatOf(node: BinaryNode): string {
	return `${node.attrs.from ?? ''}|${node.attrs.recipient ?? ''}`
}

export class MessageOrder {
	/** the last ticket of each chat that has not passed yet */
	private readonly last = new Map<string, Ticket>()
	private readonly tickets = new WeakMap<BinaryNode, Ticket>()
	private readonly wrapped = new WeakMap<Handler, Handler>()
	/** messages that stopped waiting for an earlier one after `TURN_WAIT_MS` */
	gaveUp = 0

	constructor(
		private readonly log: Logger,
		private readonly waitMs = TURN_WAIT_MS
	) {}

	/** Baileys accepted a message stanza (called in arrival order) */
	arrive(node: BinaryNode): void {
		const chat = chatOf(node)
		let pass!: () => void
		const passed = new Promise<void>(resolve => (pass = resolve))
		const ticket: Ticket = { chat, passed, pass, after: this.last.get(chat)?.passed ?? Promise.resolve(), done: false }
		this.last.set(chat, ticket)
		this.tickets.set(node, ticket)
	}

	/** `mutex`, entered only once the earlier messages of this message's chat did */
	inTurn(node: BinaryNode, mutex: Mutex): Mutex {
		return {
			mutex: async code => {
				const ticket = this.tickets.get(node)
				if (ticket && !ticket.done) {
					await this.turn(ticket, node)
					this.finish(ticket)
				}
				// called in the same tick as the ticket passes, so the next message of the chat (woken by it) queues
				// for the mutex behind this one
				return mutex.mutex(code)
			}
		}
	}

	/** `handler`, marking each message finished when it returns, whatever path it took */
	wrap<H extends Handler>(handler: H): H {
		let w = this.wrapped.get(handler)
		if (!w) {
			w = (node, ...rest) =>
				handler(node, ...rest).finally(() => {
					const ticket = this.tickets.get(node)
					if (ticket) this.finish(ticket)
				})
			this.wrapped.set(handler, w)
		}
		return w as H
	}

	/** chats with a message waiting or in progress (for tests and figures) */
	get pendingChats(): number {
		return this.last.size
	}

	private async turn(ticket: Ticket, node: BinaryNode): Promise<void> {
		let timer: NodeJS.Timeout | undefined
		const late = new Promise<boolean>(resolve => (timer = setTimeout(() => resolve(true), this.waitMs)))
		try {
			if (await Promise.race([ticket.after.then(() => false), late])) {
				this.gaveUp++
				this.log.warn({ id: node.attrs.id, waitedMs: this.waitMs }, 'an earlier message of this chat is still not handled; handling this one first')
			}
		} finally {
			clearTimeout(timer)
		}
	}

	private finish(ticket: Ticket): void {
		if (ticket.done) return
		ticket.done = true
		ticket.pass()
		if (this.last.get(ticket.chat) === ticket) this.last.delete(ticket.chat)
	}
}
