// Spawns the built bridge with the protocol stream on fd 3, as the connector does.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import net from 'node:net'
import { fileURLToPath } from 'node:url'
import { checkEvent } from '../dist/protocol.js'
import { collectLines } from './helpers.mjs'

const MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url))

function startBridge(env = {}) {
	const child = spawn(process.execPath, [MAIN], {
		stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
		env: { ...process.env, BRIDGE_LOG_LEVEL: 'debug', WA_WEBSOCKET_URL: 'ws://127.0.0.1:9/ws/chat', ...env }
	})
	let stdout = ''
	let stderr = ''
	child.stdout.on('data', d => { stdout += d })
	child.stderr.on('data', d => { stderr += d })
	const rpc = child.stdio[3]
	const { next } = collectLines(rpc, () => '; stderr:\n' + stderr)
	const exited = new Promise(resolve => child.on('exit', (code, signal) => resolve({ code, signal })))
	return { child, rpc, next, exited, out: () => ({ stdout, stderr }) }
}

test('bridge: ready, ping, malformed line, unknown method, clean exit on EOF, nothing on stdout', async () => {
	const b = startBridge()
	const ready = await b.next(m => m.event === 'bridge.ready')
	assert.equal(checkEvent(ready.event, ready.session, ready.data), undefined)
	assert.equal(ready.data.protocol, 1)
	assert.equal(ready.data.baileys_version, '7.0.0-rc14')
	assert.equal(ready.data.pid, b.child.pid)

	b.rpc.write('{"id":"c-1","method":"ping","params":{}}\n')
	const pong = await b.next(m => m.id === 'c-1')
	assert.equal(pong.result.pong, true)
	assert.equal(pong.result.sessions, 0)
	assert.ok(Number.isInteger(pong.result.uptime_ms))

	b.rpc.write('{not json at all\n')
	assert.equal((await b.next(m => m.id === null)).error.code, 'parse_error')
	b.rpc.write('{"id":"c-2","method":"frobnicate","params":{}}\n')
	assert.equal((await b.next(m => m.id === 'c-2')).error.code, 'method_not_found')
	b.rpc.write('{"id":"c-3","method":"session.stop","params":{"session":"nobody"}}\n')
	assert.equal((await b.next(m => m.id === 'c-3')).error.code, 'session_not_found')
	b.rpc.write('{"id":"c-4","method":"session.start","params":{"session":"bad id!","creds":null}}\n')
	const bad = await b.next(m => m.id === 'c-4')
	assert.equal(bad.error.code, 'invalid_params')
	assert.equal(bad.error.data.field, 'session')
	b.rpc.write('{"id":"c-5","method":"ping","params":{}}\n')
	assert.equal((await b.next(m => m.id === 'c-5')).result.pong, true, 'still serving after bad lines')

	b.rpc.end()
	const { code, signal } = await b.exited
	assert.equal(signal, null)
	assert.equal(code, 0)
	const { stdout, stderr } = b.out()
	assert.equal(stdout, '', 'nothing on stdout')
	for (const line of stderr.trim().split('\n')) {
		const l = JSON.parse(line)
		assert.equal(typeof l.level, 'string')
		assert.equal(typeof l.time, 'number')
	}
})

test('bridge: a new session saves generated creds before connecting; SIGTERM closes it (requested) and exits 0', async () => {
	// a TCP server that accepts and never answers: the socket stays `connecting`
	const silent = net.createServer(() => {})
	await new Promise(r => silent.listen(0, '127.0.0.1', r))
	const b = startBridge({ BRIDGE_LOG_LEVEL: 'info', WA_WEBSOCKET_URL: `ws://127.0.0.1:${silent.address().port}/ws/chat` })
	try {
		await b.next(m => m.event === 'bridge.ready')
		b.rpc.write('{"id":"c-1","method":"session.start","params":{"session":"t1","creds":null}}\n')
		const save = await b.next(m => m.method === 'creds.save')
		assert.equal(save.params.session, 't1')
		assert.equal(save.params.creds.noiseKey.private.type, 'Buffer')
		assert.equal(save.params.creds.registered, false)
		// session.start is answered only once the creds are durable
		await new Promise(r => setTimeout(r, 100))
		b.rpc.write(JSON.stringify({ id: save.id, result: {} }) + '\n')
		const started = await b.next(m => m.id === 'c-1')
		assert.deepEqual(started.result, { session: 't1', generated_creds: true })
		b.rpc.write('{"id":"c-2","method":"session.list","params":{}}\n')
		const list = await b.next(m => m.id === 'c-2')
		const [entry] = list.result.sessions
		const { lastReceivedAt, ...rest } = entry
		assert.deepEqual(rest, { session: 't1', connection: 'connecting', has_qr: false, me: null, heldReceipts: 0, bufferHits: 0 })
		assert.ok(lastReceivedAt === null || typeof lastReceivedAt === 'number', 'lastReceivedAt: ms or null')
		b.rpc.write('{"id":"c-3","method":"session.requestPairingCode","params":{"session":"t1","phone":"15550001111"}}\n')
		assert.equal((await b.next(m => m.id === 'c-3')).error.code, 'pairing_not_ready')
		b.rpc.write('{"id":"c-4","method":"message.send","params":{"session":"t1","to":"1@s.whatsapp.net","content":{"text":"x"}}}\n')
		assert.equal((await b.next(m => m.id === 'c-4')).error.code, 'not_connected')
		b.child.kill('SIGTERM')
		const close = await b.next(m => m.event === 'connection.update' && m.data.connection === 'close')
		assert.equal(close.session, 't1')
		assert.equal(close.data.requested, true)
		assert.equal(checkEvent(close.event, close.session, close.data), undefined)
		const { code } = await b.exited
		assert.equal(code, 0)
		assert.equal(b.out().stdout, '')
	} finally {
		silent.close()
		b.child.kill('SIGKILL')
	}
})

test('markOnlineOnConnect stays false (the phone keeps its notifications; baileys-v7.md section 8)', async () => {
	const { readFile } = await import('node:fs/promises')
	const src = await readFile(new URL('../dist/session.js', import.meta.url), 'utf8')
	assert.match(src, /markOnlineOnConnect: false/)
	assert.doesNotMatch(src, /markOnlineOnConnect: true/)
})
