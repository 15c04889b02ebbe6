// Bounded, sequenced event log that tests read through the control API (list and long-poll wait).

/** @typedef {{ seq: number, type: string, at: number, data: Record<string, any> }} SimEvent */

export const MAX_EVENTS = 20_000
/**
 * The log is trimmed back to MAX_EVENTS once it has grown this much past it: trimming on every emit would move
 * 20,000 entries per event, which under load (send-batch, hundreds of accounts) costs more than the event itself.
 */
const TRIM_SLACK = 2_000

/**
 * Does `data` hold `expected` at every dotted path in `match`? Values compare by JSON equality.
 * @param {Record<string, any>} data
 * @param {Record<string, unknown> | undefined} match
 */
export function matches(data, match) {
	if (!match) return true
	return Object.entries(match).every(([path, expected]) => {
		let value = data
		for (const key of path.split('.')) {
			if (value === null || typeof value !== 'object' || !Object.hasOwn(value, key)) return false
			value = value[key]
		}
		return value === expected || JSON.stringify(value) === JSON.stringify(expected)
	})
}

export class EventLog {
	/** @type {SimEvent[]} */
	#events = []
	#seq = 0
	/** @type {Set<{ test: (e: SimEvent) => boolean, resolve: (e: SimEvent) => void }>} */
	#waiters = new Set()

	/** @param {(e: SimEvent) => void} [onEmit] observer, e.g. debug logging */
	constructor(onEmit) {
		this.onEmit = onEmit
	}

	get lastSeq() {
		return this.#seq
	}

	/**
	 * @param {string} type
	 * @param {Record<string, any>} data
	 */
	emit(type, data) {
		const event = { seq: ++this.#seq, type, at: Date.now(), data }
		this.#events.push(event)
		if (this.#events.length > MAX_EVENTS + TRIM_SLACK) this.#events.splice(0, this.#events.length - MAX_EVENTS)
		this.onEmit?.(event)
		if (this.#waiters.size) {
			for (const waiter of this.#waiters) {
				if (waiter.test(event)) waiter.resolve(event)
			}
		}
		return event
	}

	/**
	 * @param {{ after?: number, type?: string, limit?: number }} [query]
	 * @returns {SimEvent[]}
	 */
	list({ after = 0, type, limit = 1000 } = {}) {
		const out = []
		const events = this.#events
		for (let i = this.#firstAfter(after); i < events.length; i++) {
			const e = events[i]
			if (type && e.type !== type) continue
			out.push(e)
			if (out.length >= limit) break
		}
		return out
	}

	/**
	 * First event after `after` with this type and match, waiting for it if it has not happened yet.
	 * @param {{ type: string, match?: Record<string, unknown>, after?: number, timeoutMs?: number, signal?: AbortSignal }} q
	 * @returns {Promise<SimEvent | undefined>} undefined on timeout or abort
	 */
	wait({ type, match, after = 0, timeoutMs = 10_000, signal }) {
		const test = (/** @type {SimEvent} */ e) => e.seq > after && e.type === type && matches(e.data, match)
		const events = this.#events
		for (let i = this.#firstAfter(after); i < events.length; i++) {
			if (test(events[i])) return Promise.resolve(events[i])
		}
		return new Promise(resolve => {
			const waiter = {
				test,
				resolve: (/** @type {SimEvent | undefined} */ e) => {
					this.#waiters.delete(waiter)
					clearTimeout(timer)
					signal?.removeEventListener('abort', onAbort)
					resolve(e)
				}
			}
			const onAbort = () => waiter.resolve(undefined)
			const timer = setTimeout(onAbort, timeoutMs)
			signal?.addEventListener('abort', onAbort, { once: true })
			this.#waiters.add(waiter)
		})
	}

	/**
	 * Index of the first kept event with seq > after (seqs ascend, so a binary search; waits and listings after a
	 * recent seq do not rescan the whole log).
	 * @param {number} after
	 */
	#firstAfter(after) {
		const events = this.#events
		let lo = 0
		let hi = events.length
		while (lo < hi) {
			const mid = (lo + hi) >>> 1
			if (events[mid].seq <= after) lo = mid + 1
			else hi = mid
		}
		return lo
	}

	/** Forget all events (seq keeps growing so stale `after` values stay safe); pending waits keep waiting. */
	clear() {
		this.#events = []
	}
}
