// Shared test helpers: an in-memory duplex for RpcPeer, and a logger that writes into an array.
import { PassThrough, Duplex, Writable } from 'node:stream'
import { pino } from 'pino'

/** a duplex for the peer under test: `toPeer` feeds it, `lines` collects what it writes */
export function memoryStream() {
	const toPeer = new PassThrough()
	const fromPeer = new PassThrough()
	const stream = Duplex.from({ readable: toPeer, writable: fromPeer })
	const lines = []
	let buf = ''
	const waiters = []
	fromPeer.on('data', d => {
		buf += d
		let i
		while ((i = buf.indexOf('\n')) >= 0) {
			const m = JSON.parse(buf.slice(0, i))
			buf = buf.slice(i + 1)
			lines.push(m)
			for (const w of [...waiters]) if (w.pred(m)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(m) }
		}
	})
	const next = (pred = () => true, ms = 2000) => {
		const hit = lines.find(pred)
		if (hit) { lines.splice(lines.indexOf(hit), 1); return Promise.resolve(hit) }
		return new Promise((resolve, reject) => {
			const t = setTimeout(() => reject(new Error('no matching line written')), ms)
			waiters.push({ pred, resolve: m => { clearTimeout(t); lines.splice(lines.indexOf(m), 1); resolve(m) } })
		})
	}
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
