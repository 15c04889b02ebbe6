#!/usr/bin/env node
// wasim CLI: start the simulator and its control API, print one "ready" JSON line on stdout, log to stderr,
// save state and exit cleanly on SIGTERM/SIGINT.
import { parseArgs } from 'node:util'
import { startWasim, isLoopback } from '../src/index.mjs'
import { createLogger, isLogLevel } from '../src/log.mjs'

const USAGE = 'usage: wasim [--host 127.0.0.1] [--port 0] [--control-port 0] [--state FILE] [--log-level info]'

/** @param {string} message */
function die(message) {
	process.stderr.write(`wasim: ${message}\n${USAGE}\n`)
	process.exit(2)
}

/** @param {string} name @param {string} value */
function port(name, value) {
	if (!/^\d+$/.test(value) || Number(value) > 65535) die(`--${name} must be a port number (0 = any free port)`)
	return Number(value)
}

let args
try {
	args = parseArgs({
		options: {
			host: { type: 'string', default: '127.0.0.1' },
			port: { type: 'string', default: '0' },
			'control-port': { type: 'string', default: '0' },
			state: { type: 'string' },
			'log-level': { type: 'string', default: 'info' },
			help: { type: 'boolean', short: 'h' }
		},
		strict: true,
		allowPositionals: false
	}).values
} catch (err) {
	die(err instanceof Error ? err.message : String(err))
}
if (args.help) {
	process.stdout.write(`${USAGE}\n`)
	process.exit(0)
}
const host = /** @type {string} */ (args.host)
if (!isLoopback(host)) die(`--host ${host} is not a loopback address`)
const level = /** @type {string} */ (args['log-level'])
if (!isLogLevel(level)) die(`--log-level must be one of silent, error, warn, info, debug, trace`)
const log = createLogger(level)

// libsignal prints session dumps (key material) with console.info/log; keep stdout to the ready line
// and never let key material reach the logs.
console.log = console.info = console.debug = () => {}
console.warn = console.error = (/** @type {unknown} */ first) => log.debug('console', { message: typeof first === 'string' ? first : typeof first })

process.on('unhandledRejection', err => log.error('unhandled rejection', { error: err instanceof Error ? err.stack : String(err) }))
process.on('uncaughtException', err => log.error('uncaught exception', { error: err.stack }))

let wasim
try {
	wasim = await startWasim({
		host,
		port: port('port', /** @type {string} */ (args.port)),
		controlPort: port('control-port', /** @type {string} */ (args['control-port'])),
		stateFile: args.state,
		log
	})
} catch (err) {
	log.error('failed to start', { error: err instanceof Error ? err.message : String(err) })
	process.exit(1)
}

let stopping = false
/** @param {NodeJS.Signals} signal */
async function stop(signal) {
	if (stopping) return
	stopping = true
	log.info(`${signal}: saving state and exiting`)
	try {
		await wasim.close()
		process.exit(0)
	} catch (err) {
		log.error('error while stopping', { error: err instanceof Error ? err.message : String(err) })
		process.exit(1)
	}
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)

process.stdout.write(JSON.stringify(wasim.ready) + '\n')
log.info('ready', { ws_url: wasim.ready.ws_url, control_url: wasim.ready.control_url, state: args.state ?? null })
