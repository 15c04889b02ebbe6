// Bounded, sequenced event log that tests read through the control API (list and long-poll wait).

/** @typedef {{ seq: number, type: string, at: number, data: Record<string, any> }} SimEvent */

export const MAX_EVENTS = 20_000

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
		if (this.#events.length > MAX_EVENTS) this.#events.splice(0, this.#events.length - MAX_EVENTS)
		this.onEmit?.(event)
		for (const waiter of this.#waiters) {
			if (waiter.test(event)) waiter.resolve(event)
		}
		return event
	}

	/**
	 * @param {{ after?: number, type?: string, limit?: number }} [query]
	 * @returns {SimEvent[]}
	 */
	list({ after = 0, type, limit = 1000 } = {}) {
		const out = []
		for (const e of this.#events) {
			if (e.seq <= after || (type && e.type !== type)) continue
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
		const past = this.#events.find(test)
		if (past) return Promise.resolve(past)
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

	/** Forget all events (seq keeps growing so stale `after` values stay safe); pending waits keep waiting. */
	clear() {
		this.#events = []
	}
}
