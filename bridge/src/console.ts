/**
 * Console routing. libsignal prints with console.* (e.g. `console.info("Closing session:", sessionEntry)` with the
 * private ratchet keys inside the object), and stdout must never carry anything. Every console.* call and every
 * process.stdout.write becomes a debug log line under component "console": only the text survives, objects are
 * dropped, runs that look like key material are replaced by [redacted], and the line is capped.
 */
import type { Logger } from 'pino'

export const MAX_CONSOLE_TEXT = 2000
export const REDACTED = '[redacted]'

const REDACTIONS: RegExp[] = [
	// node's inspect form of bytes, in case a library pre-formats a Buffer into a string
	/<Buffer[^>]*>?/g,
	/Uint8Array\(\d+\)\s*\[[^\]]*\]?/g,
	// hex runs >= 32 chars, and hex bytes separated by spaces/colons (16+ bytes)
	/[0-9A-Fa-f]{32,}/g,
	/(?:[0-9A-Fa-f]{2}[ :]){15,}[0-9A-Fa-f]{2}/g,
	// base64 / base64url runs >= 24 chars (with optional padding)
	/[A-Za-z0-9+/]{24,}={0,2}/g,
	/[A-Za-z0-9_-]{24,}={0,2}/g,
	// decimal byte arrays: 16+ comma separated small numbers
	/(?:\d{1,3}\s*,\s*){15,}\d{1,3}/g
]

/** Replace anything that looks like key material by [redacted]. */
export function redact(text: string): string {
	let out = text
	for (const re of REDACTIONS) out = out.replace(re, REDACTED)
	return out
}

/** The text of a console call: strings and primitives are kept, an Error keeps its name and message, objects are dropped. */
export function consoleText(args: readonly unknown[]): string {
	const parts: string[] = []
	let dropped = 0
	for (const a of args) {
		if (typeof a === 'string') parts.push(a)
		else if (typeof a === 'number' || typeof a === 'boolean' || typeof a === 'bigint') parts.push(String(a))
		else if (a instanceof Error) parts.push(`${a.name}: ${a.message}`)
		else if (a === null || a === undefined) parts.push(String(a))
		else dropped++
	}
	if (dropped) parts.push(`[${dropped} object${dropped > 1 ? 's' : ''} dropped]`)
	let text = redact(parts.join(' ')).replace(/\s+$/, '')
	if (text.length > MAX_CONSOLE_TEXT) text = `${text.slice(0, MAX_CONSOLE_TEXT)}…[truncated]`
	return text
}

const METHODS = ['log', 'info', 'warn', 'error', 'debug', 'trace'] as const

/**
 * Route console.* and process.stdout.write to `log` at debug. Call it before anything that may print is imported.
 * Returns a function that restores the originals (for tests).
 */
export function installConsoleRouting(log: Logger): () => void {
	const target = log.child({ component: 'console' })
	const saved = new Map<string, unknown>()
	for (const m of METHODS) {
		saved.set(m, console[m])
		console[m] = (...args: unknown[]) => {
			if (!target.isLevelEnabled('debug')) return
			target.debug({ method: m }, consoleText(args))
		}
	}
	const stdoutWrite = process.stdout.write
	process.stdout.write = ((chunk: unknown, encoding?: unknown, cb?: unknown): boolean => {
		if (target.isLevelEnabled('debug')) {
			const text = typeof chunk === 'string' ? chunk : Buffer.isBuffer(chunk) || chunk instanceof Uint8Array ? Buffer.from(chunk).toString('utf8') : ''
			target.debug({ method: 'stdout' }, consoleText([text]))
		}
		const done = typeof encoding === 'function' ? encoding : cb
		if (typeof done === 'function') process.nextTick(done as () => void)
		return true
	}) as typeof process.stdout.write
	return () => {
		for (const m of METHODS) (console as unknown as Record<string, unknown>)[m] = saved.get(m)
		process.stdout.write = stdoutWrite
	}
}
