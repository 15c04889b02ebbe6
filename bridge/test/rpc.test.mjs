import { test } from 'node:test'
import assert from 'node:assert/strict'
import { RpcPeer } from '../dist/rpc.js'
import { RpcError } from '../dist/protocol.js'
import { memoryStream, silentLogger } from './helpers.mjs'

function setup(opts = {}) {
	const io = memoryStream()
	const peer = new RpcPeer(io.stream, { logger: silentLogger, ...opts })
	peer.handle('echo', params => params)
	return { ...io, peer }
}

test('requests split across chunks and several per chunk are answered in order', async () => {
	const { peer, write, next } = setup()
	write('{"id":"c-1","method":"ec')
	write('ho","params":{"a":1}}\n{"id":"c-2","method":"echo","params":{"b":2}}\n{"id":"c-3","met')
	write('hod":"echo"}\n')
	assert.deepEqual(await next(m => m.id === 'c-1'), { id: 'c-1', result: { a: 1 } })
	assert.deepEqual(await next(m => m.id === 'c-2'), { id: 'c-2', result: { b: 2 } })
	assert.deepEqual(await next(m => m.id === 'c-3'), { id: 'c-3', result: {} }, 'missing params are {}')
	assert.ok(peer.isOpen)
})

test('a line that is not JSON gets parse_error and the next line is processed', async () => {
	const { write, next } = setup()
	write('this is not json\n{"id":"c-1","method":"echo","params":{}}\n')
	const err = await next(m => m.id === null)
	assert.equal(err.error.code, 'parse_error')
	assert.deepEqual(await next(m => m.id === 'c-1'), { id: 'c-1', result: {} })
})

test('JSON that is no message shape gets invalid_request, echoing a string id', async () => {
	const { write, next } = setup()
	write('[1,2]\n{"id":"c-7","foo":1}\n{"id":"c-8","method":5}\n{"id":"c-9","method":"echo","params":[]}\n')
	assert.equal((await next(m => m.id === null)).error.code, 'invalid_request')
	assert.equal((await next(m => m.id === 'c-7')).error.code, 'invalid_request')
	assert.equal((await next(m => m.id === 'c-8')).error.code, 'invalid_request')
	assert.equal((await next(m => m.id === 'c-9')).error.code, 'invalid_request')
})

test('unknown method gets method_not_found', async () => {
	const { write, next } = setup()
	write('{"id":"c-1","method":"no.such","params":{}}\n')
	const r = await next()
	assert.equal(r.id, 'c-1')
	assert.equal(r.error.code, 'method_not_found')
})

test('a throwing handler is answered with internal and the loop continues', async () => {
	const { peer, write, next } = setup()
	peer.handle('boom', () => { throw new Error('kaput') })
	peer.handle('reject', async () => { throw new Error('async kaput') })
	peer.handle('coded', async () => { throw new RpcError('session_not_found', 'nope', { session: 'x' }) })
	write('{"id":"c-1","method":"boom","params":{}}\n{"id":"c-2","method":"reject","params":{}}\n{"id":"c-3","method":"coded","params":{}}\n{"id":"c-4","method":"echo","params":{"ok":true}}\n')
	assert.deepEqual((await next(m => m.id === 'c-1')).error, { code: 'internal', message: 'kaput' })
	assert.deepEqual((await next(m => m.id === 'c-2')).error, { code: 'internal', message: 'async kaput' })
	assert.deepEqual((await next(m => m.id === 'c-3')).error, { code: 'session_not_found', message: 'nope', data: { session: 'x' } })
	assert.deepEqual(await next(m => m.id === 'c-4'), { id: 'c-4', result: { ok: true } })
})

test('outgoing calls use b-<n> ids and resolve with the result or reject with the peer error', async () => {
	const { peer, write, next } = setup()
	const p1 = peer.call('keys.get', { session: 's', type: 'pre-key', ids: ['1'] })
	const p2 = peer.call('creds.save', { session: 's', creds: {} })
	const r1 = await next(m => m.method === 'keys.get')
	const r2 = await next(m => m.method === 'creds.save')
	assert.equal(r1.id, 'b-1')
	assert.equal(r2.id, 'b-2')
	write(`{"id":"b-2","error":{"code":"internal","message":"disk full","data":{"x":1}}}\n{"id":"b-1","result":{"values":{}}}\n`)
	assert.deepEqual(await p1, { values: {} })
	await assert.rejects(p2, e => e instanceof RpcError && e.code === 'internal' && /disk full/.test(e.message) && e.data.x === 1)
})

test('an outgoing call times out, and a late answer is ignored', async () => {
	const { peer, write, next } = setup({ timeoutMs: 50 })
	const p = peer.call('keys.set', { session: 's', data: {} })
	const req = await next(m => m.method === 'keys.set')
	await assert.rejects(p, e => e.code === 'timeout')
	write(`{"id":"${req.id}","result":{}}\n`)
	assert.equal(peer.pendingCount, 0)
})

test('pending calls fail when the stream ends, and new calls fail at once', async () => {
	const { peer, toPeer, next } = setup()
	let ended
	peer.onEnd(reason => { ended = reason })
	const p = peer.call('keys.get', { session: 's', type: 'session', ids: [] })
	await next(m => m.method === 'keys.get')
	toPeer.end()
	await assert.rejects(p, e => e.code === 'not_connected')
	assert.equal(ended, 'eof')
	assert.equal(peer.isOpen, false)
	await assert.rejects(peer.call('keys.get', {}), e => e.code === 'not_connected')
})

test('a line over the maximum size gets parse_error and later lines still work', async () => {
	const { write, next } = setup({ maxLineBytes: 64 })
	write('{"id":"c-1","method":"echo","params":{"pad":"' + 'x'.repeat(40))
	write('x'.repeat(40) + '"}}\n{"id":"c-2","method":"echo","params":{}}\n')
	assert.equal((await next(m => m.id === null)).error.code, 'parse_error')
	assert.deepEqual(await next(m => m.id === 'c-2'), { id: 'c-2', result: {} })
})

test('responses and events from the connector never stop the loop', async () => {
	const { write, next } = setup()
	write('{"id":"b-99","result":{}}\n{"event":"x","session":null,"data":{}}\n{"id":"c-1","method":"echo","params":{}}\n')
	assert.deepEqual(await next(), { id: 'c-1', result: {} })
})

test('refuseWith answers new work with that error but still answers ping', async () => {
	const { peer, write, next } = setup()
	peer.handle('ping', () => ({ pong: true }))
	peer.refuseWith = new RpcError('shutting_down', 'stopping')
	write('{"id":"c-1","method":"echo","params":{}}\n{"id":"c-2","method":"ping","params":{}}\n')
	assert.equal((await next(m => m.id === 'c-1')).error.code, 'shutting_down')
	assert.deepEqual(await next(m => m.id === 'c-2'), { id: 'c-2', result: { pong: true } })
})

test('events are written as one line each', async () => {
	const { peer, next } = setup()
	peer.event('session.error', 's1', { message: 'x' })
	assert.deepEqual(await next(), { event: 'session.error', session: 's1', data: { message: 'x' } })
})
