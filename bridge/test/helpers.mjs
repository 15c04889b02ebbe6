// Shared test helpers: an in-memory duplex for RpcPeer, and a logger that writes into an array.
import { PassThrough, Duplex, Writable } from 'node:stream'
import { pino } from 'pino'

/**
 * Collects the JSON lines a readable stream carries. `next(pred)` takes the first collected line matching `pred`,
 * or waits for one; `describe()` adds context to the timeout error.
 */
export function collectLines(readable, describe = () => '') {
	const lines = []
	const waiters = []
	let buf = ''
	readable.on('data', d => {
		buf += d
		let i
		while ((i = buf.indexOf('\n')) >= 0) {
			const m = JSON.parse(buf.slice(0, i))
			buf = buf.slice(i + 1)
			const w = waiters.find(x => x.pred(m))
			if (w) { waiters.splice(waiters.indexOf(w), 1); w.resolve(m) } else lines.push(m)
		}
	})
	const next = (pred = () => true, ms = 10000) => {
		const hit = lines.find(pred)
		if (hit) { lines.splice(lines.indexOf(hit), 1); return Promise.resolve(hit) }
		return new Promise((resolve, reject) => {
			const t = setTimeout(() => reject(new Error('no matching line written' + describe())), ms)
			waiters.push({ pred, resolve: m => { clearTimeout(t); resolve(m) } })
		})
	}
	return { lines, next }
}

/** a duplex for the peer under test: `toPeer` feeds it, `next` takes what it writes */
export function memoryStream() {
	const toPeer = new PassThrough()
	const fromPeer = new PassThrough()
	const stream = Duplex.from({ readable: toPeer, writable: fromPeer })
	const { lines, next } = collectLines(fromPeer)
	return { stream, toPeer, lines, next, write: s => toPeer.write(s) }
}

/** a pino logger writing JSON lines into `out` */
export function memoryLogger(level = 'debug') {
	const out = []
	const dest = new Writable({ write(chunk, _enc, cb) { out.push(...String(chunk).split('\n').filter(Boolean)); cb() } })
	const logger = pino({ level, base: undefined, formatters: { level: l => ({ level: l }) } }, dest)
	return { logger, out, text: () => out.join('\n') }
}

export const silentLogger = pino({ level: 'silent' })
