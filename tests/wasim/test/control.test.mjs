// The control API rejects bad input with 4xx JSON errors; the transport pieces are unit-tested here too.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { WebSocket } from 'ws'
import { Wasim } from '../test-support/harness.mjs'
import { FrameReader, frame } from '../src/noise.mjs'
import { EventLog, matches } from '../src/events.mjs'

/** @type {Wasim} */
let wasim
before(async () => {
	wasim = await Wasim.start()
})
after(async () => {
	await wasim.stop()
})

/** @param {{ status: number, body: any }} res @param {number} status @param {string} code */
function assertError(res, status, code) {
	assert.equal(res.status, status, JSON.stringify(res.body))
	assert.equal(res.body.error.code, code)
	assert.equal(typeof res.body.error.message, 'string')
}

test('health and info', async () => {
	assert.deepEqual(await wasim.get('/health'), { ok: true })
	assert.deepEqual(await wasim.get('/info'), {
		ws_url: wasim.ready.ws_url,
		control_url: wasim.ready.control_url,
		root_pub: wasim.ready.root_pub
	})
})

test('unknown paths are 404, wrong methods 405', async () => {
	assertError(await wasim.request('GET', '/nope'), 404, 'not_found')
	assertError(await wasim.request('GET', '/messages/send'), 405, 'method_not_allowed')
})

test('malformed bodies are 400 bad_request', async () => {
	assertError(await wasim.request('POST', '/contacts', '{not json'), 400, 'bad_request')
	assertError(await wasim.request('POST', '/contacts', '[1,2]'), 400, 'bad_request')
	assertError(await wasim.request('POST', '/contacts', { phone: 'abc', lid: '123456' }), 400, 'bad_request')
	assertError(await wasim.request('POST', '/contacts', { phone: '15557770001' }), 400, 'bad_request')
	assertError(await wasim.request('POST', '/qr/scan', { qr: 'garbage', phone: '1555000', lid: '9999000' }), 400, 'bad_request')
	assertError(await wasim.request('POST', '/pairing-code/enter', { code: 'short', phone: '1555000', lid: '9999000' }), 400, 'bad_request')
	assertError(await wasim.request('POST', '/events/wait', {}), 400, 'bad_request')
	assertError(await wasim.request('POST', '/events/wait', { type: 'x', match: [1] }), 400, 'bad_request')
	assertError(await wasim.request('GET', '/events?after=-1'), 400, 'bad_request')
	assertError(await wasim.request('POST', '/messages/send', { from: '15557770001', to: '15550001111', text: 5 }), 400, 'bad_request')
	assertError(await wasim.request('POST', '/messages/send', { from: '15557770001', to: '15550001111', text: 'x', addressing: 'both' }), 400, 'bad_request')
	assertError(await wasim.request('POST', '/disconnect', { account: '15550001111', code: 'x' }), 400, 'bad_request')
	assertError(await wasim.request('POST', '/disconnect', { account: '15550001111', mode: 'explode' }), 400, 'bad_request')
})

test('unknown accounts and contacts are 404; a QR with no waiting connection is 409', async () => {
	assertError(await wasim.request('POST', '/messages/send', { from: '15550000000', to: '15550001111', text: 'x' }), 404, 'not_found')
	assertError(await wasim.request('POST', '/disconnect', { account: '15550009999' }), 404, 'not_found')
	assertError(await wasim.request('POST', '/lid-mapping', { to: '15550009999', lid: '1234567', pn: '7654321' }), 404, 'not_found')
	const noise = Buffer.alloc(32, 1).toString('base64')
	const qr = `2@ref,${noise},${noise},${noise},1`
	assertError(await wasim.request('POST', '/qr/scan', { qr, phone: '15550001111', lid: '99990001111' }), 409, 'not_connected')
})

test('events: list with after/type/limit, wait returns past events and times out with 408', async () => {
	await wasim.post('/contacts', { phone: '15557770002', lid: '88887770002' })
	const all = await wasim.get('/events')
	assert.ok(all.last_seq >= 0)
	const res = await wasim.request('POST', '/events/wait', { type: 'nothing.ever', timeout_ms: 50 })
	assertError(res, 408, 'timeout')
	const { events } = await wasim.get('/events?type=connection.opened&limit=1')
	assert.ok(events.length <= 1)
})

test('a garbage frame closes only that connection and is reported as an error event', async () => {
	const seq = await wasim.lastSeq()
	const ws = new WebSocket(wasim.ready.ws_url)
	await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject))
	const closed = new Promise(resolve => ws.once('close', resolve))
	ws.send(Buffer.from([0x57, 0x41, 0x06, 0x03, 0x00, 0x00, 0x03, 0xde, 0xad, 0xbf]))
	await closed
	const error = await wasim.waitEvent('error', {}, seq)
	assert.equal(typeof error.data.message, 'string')
	assert.deepEqual(await wasim.get('/health'), { ok: true })
})

test('CLI refuses a non-loopback host', () => {
	const bin = fileURLToPath(new URL('../bin/wasim.mjs', import.meta.url))
	const run = spawnSync(process.execPath, [bin, '--host', '0.0.0.0'], { encoding: 'utf8' })
	assert.equal(run.status, 2)
	assert.equal(run.stdout, '')
	assert.match(run.stderr, /not a loopback/)
})

test('FrameReader: ED prefix, intro, several frames per chunk and frames split across chunks', () => {
	const reader = new FrameReader()
	const routing = Buffer.from([0x45, 0x44, 0x00, 0x01, 0x00, 0x00, 0x02, 0xaa, 0xbb])
	const intro = Buffer.from([0x57, 0x41, 0x06, 0x03])
	const stream = Buffer.concat([routing, intro, frame(Buffer.from('one')), frame(Buffer.from('two')), frame(Buffer.from('three'))])
	const got = []
	// byte by byte: every split point is exercised
	for (const byte of stream) got.push(...reader.push(Buffer.from([byte])))
	assert.deepEqual(got.map(String), ['one', 'two', 'three'])
	const whole = new FrameReader().push(Buffer.concat([intro, frame(Buffer.from('a')), frame(Buffer.from('b'))]))
	assert.deepEqual(whole.map(String), ['a', 'b'])
	assert.throws(() => new FrameReader().push(Buffer.from('GET / HTTP')), /intro/)
})

test('EventLog: seq, dotted-path match, bounded waits', async () => {
	const log = new EventLog()
	log.emit('a', { x: { y: 1 }, ids: ['m1'] })
	assert.ok(matches({ x: { y: 1 } }, { 'x.y': 1 }))
	assert.ok(!matches({ x: { y: 1 } }, { 'x.z': 1 }))
	assert.equal((await log.wait({ type: 'a', match: { ids: ['m1'] } }))?.seq, 1)
	const later = log.wait({ type: 'a', after: 1, timeoutMs: 1000 })
	log.emit('a', { n: 2 })
	assert.equal((await later)?.seq, 2)
	assert.equal(await log.wait({ type: 'b', timeoutMs: 10 }), undefined)
})

test('EventLog: trimmed in chunks, keeping at least the last 20,000; list/wait start after the given seq', async () => {
	const log = new EventLog()
	for (let i = 1; i <= 22_000; i++) log.emit(i % 2 ? 'odd' : 'even', { i })
	assert.equal(log.list({ limit: 1 })[0].seq, 1, 'not trimmed before the slack is used up')
	log.emit('odd', { i: 22_001 })
	assert.equal(log.list({ limit: 1 })[0].seq, 2_002, 'trimmed back to the last 20,000')
	assert.deepEqual(log.list({ after: 21_990, type: 'even' }).map(e => e.seq), [21_992, 21_994, 21_996, 21_998, 22_000])
	assert.deepEqual(log.list({ after: 100 }).map(e => e.seq).slice(0, 2), [2_002, 2_003])
	assert.equal(log.list({ after: 22_001 }).length, 0)
	assert.equal((await log.wait({ type: 'even', after: 21_997 }))?.seq, 21_998)
	assert.equal((await log.wait({ type: 'even', match: { i: 22_000 } }))?.seq, 22_000)
})
