/**
 * The bridge's logger: pino JSON lines on stderr (fd 2), `level` as its label, `time` in ms. stdout is never written.
 * Message text, key material and raw frames are logged only at debug/trace (PROTOCOL.md "Logging").
 */
import { pino, destination, stdTimeFunctions, type Logger, type LevelWithSilent } from 'pino'

const LEVELS: readonly string[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

export type { Logger }

export function levelFromEnv(value: string | undefined, fallback: LevelWithSilent): LevelWithSilent {
	const v = (value ?? '').trim().toLowerCase()
	return (LEVELS.includes(v) ? v : fallback) as LevelWithSilent
}

/** one synchronous stderr destination shared by every logger of the process, so nothing is lost on exit */
const stderr = destination({ dest: 2, sync: true })

export function makeLogger(level: LevelWithSilent, bindings: Record<string, unknown> = {}): Logger {
	return pino(
		{
			level,
			base: bindings,
			timestamp: stdTimeFunctions.epochTime,
			formatters: { level: label => ({ level: label }) }
		},
		stderr
	)
}

/** the bridge's own logger (BRIDGE_LOG_LEVEL, default info) */
export const logger: Logger = makeLogger(levelFromEnv(process.env.BRIDGE_LOG_LEVEL, 'info'))

/** the root of Baileys' loggers (BAILEYS_LOG_LEVEL, default warn); sessions take a child of it */
export const baileysLogger: Logger = makeLogger(levelFromEnv(process.env.BAILEYS_LOG_LEVEL, 'warn'), { component: 'baileys' })
