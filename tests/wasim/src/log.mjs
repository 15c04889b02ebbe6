// Minimal leveled logger. Everything goes to stderr: stdout is reserved for the single "ready" JSON line.
// Callers pass short messages and small attribute objects only; never key material or payload bytes.

const LEVELS = { silent: 0, error: 1, warn: 2, info: 3, debug: 4, trace: 5 }

/** @typedef {{ error: LogFn, warn: LogFn, info: LogFn, debug: LogFn, trace: LogFn, level: string }} Logger */
/** @typedef {(msg: string, fields?: Record<string, unknown>) => void} LogFn */

/** @param {string} level */
export function isLogLevel(level) {
	return Object.hasOwn(LEVELS, level)
}

/**
 * @param {string} [level]
 * @param {(line: string) => void} [write]
 * @returns {Logger}
 */
export function createLogger(level = 'info', write = line => process.stderr.write(line)) {
	const max = LEVELS[level] ?? LEVELS.info
	/** @param {keyof typeof LEVELS} name */
	const at = name => (msg, fields) => {
		if (LEVELS[name] > max) return
		const extra = fields ? ' ' + safeJson(fields) : ''
		write(`${new Date().toISOString()} wasim ${name.toUpperCase()} ${msg}${extra}\n`)
	}
	return { level, error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug'), trace: at('trace') }
}

/** @param {unknown} value */
function safeJson(value) {
	try {
		// Buffers would dump bytes; show only their length.
		return JSON.stringify(value, (_k, v) => (v?.type === 'Buffer' && Array.isArray(v.data) ? `<${v.data.length} bytes>` : v))
	} catch {
		return '[unserialisable]'
	}
}

export const silentLogger = createLogger('silent')
