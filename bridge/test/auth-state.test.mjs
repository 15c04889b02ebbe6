import { test } from 'node:test'
import assert from 'node:assert/strict'
import { initAuthCreds, proto } from 'baileys'
import { RpcAuthState, encodeWire, decodeWire } from '../dist/auth-state.js'
import { silentLogger } from './helpers.mjs'

/** a connector double: records calls, answers from a map, optionally slowly */
function fakeConnector({ delayMs = 0 } = {}) {
	const calls = []
	const keys = {}
	const release = []
	const caller = {
		async call(method, params, _timeoutMs, replacer) {
			// what the connector receives: the params as written on the wire (with the caller's replacer)
			params = JSON.parse(JSON.stringify(params, replacer))
			calls.push({ method, params })
			if (delayMs) await new Promise(r => setTimeout(r, delayMs))
			if (method === 'keys.get') {
				const t = keys[params.type] || {}
				return { values: Object.fromEntries(params.ids.filter(id => id in t).map(id => [id, t[id]])) }
			}
			if (method === 'keys.set') {
				for (const [type, ent] of Object.entries(params.data)) for (const [id, v] of Object.entries(ent)) {
					keys[type] ||= {}
					if (v === null) delete keys[type][id]
					else keys[type][id] = v
				}
			}
			return {}
		}
	}
	return { caller, calls, keys, release }
}

test('keys.set sends BufferJSON values and null deletes; keys.get revives them byte-exact', async () => {
	const c = fakeConnector()
	const auth = new RpcAuthState('s1', c.caller, silentLogger, initAuthCreds())
	const pair = { public: Buffer.from([1, 2, 3]), private: Buffer.from([4, 5, 6]) }
	await auth.keys.set({ 'pre-key': { 1: pair, 2: null, 3: undefined }, 'lid-mapping': { '15550001111': '99990001111' } })
	const set = c.calls.find(x => x.method === 'keys.set')
	assert.deepEqual(set.params, {
		session: 's1',
		data: {
			'pre-key': { 1: { public: { type: 'Buffer', data: 'AQID' }, private: { type: 'Buffer', data: 'BAUG' } }, 2: null, 3: null },
			'lid-mapping': { '15550001111': '99990001111' }
		}
	})
	// a fresh state (empty cache) reads from the connector
	const auth2 = new RpcAuthState('s1', c.caller, silentLogger, initAuthCreds())
	const got = await auth2.keys.get('pre-key', ['1', '2'])
	assert.deepEqual(Object.keys(got), ['1'])
	assert.ok(Buffer.isBuffer(got['1'].private))
	assert.deepEqual([...got['1'].private], [4, 5, 6])
})

test('keys.set writes every value exactly as encodeWire would (Buffers, Uint8Arrays, protobuf objects, nesting)', async () => {
	const c = fakeConnector()
	const auth = new RpcAuthState('s1', c.caller, silentLogger, initAuthCreds())
	const values = {
		session: { 'a.0': { _sessions: { k: { chain: [Buffer.from([1]), new Uint8Array([2, 3])], n: 7, s: 'x', u: undefined } } } },
		'app-state-sync-key': { 'AAAAAA+/=': proto.Message.AppStateSyncKeyData.fromObject({ keyData: Buffer.from([9, 9]), timestamp: 5 }) },
		'pre-key': { 5: { public: new Uint8Array([4]), private: Buffer.alloc(0) } }
	}
	await auth.keys.set(values)
	const set = c.calls.find(x => x.method === 'keys.set')
	const expected = {}
	for (const [type, entries] of Object.entries(values)) {
		expected[type] = Object.fromEntries(Object.entries(entries).map(([id, v]) => [id, encodeWire(v)]))
	}
	assert.deepEqual(set.params, { session: 's1', data: expected })
})

test('app-state-sync-key values are revived as AppStateSyncKeyData', async () => {
	const c = fakeConnector()
	c.keys['app-state-sync-key'] = { 'AAAAAA+/=': encodeWire(proto.Message.AppStateSyncKeyData.fromObject({ keyData: Buffer.from([9, 9]), timestamp: 5 })) }
	const auth = new RpcAuthState('s1', c.caller, silentLogger, initAuthCreds())
	const got = await auth.keys.get('app-state-sync-key', ['AAAAAA+/='])
	const v = got['AAAAAA+/=']
	assert.ok(v instanceof proto.Message.AppStateSyncKeyData)
	assert.deepEqual([...v.keyData], [9, 9])
})

test('creds round-trip through the wire form', () => {
	const creds = initAuthCreds()
	const back = RpcAuthState.reviveCreds(encodeWire(creds))
	assert.ok(Buffer.isBuffer(back.noiseKey.private))
	assert.ok(back.noiseKey.private.equals(creds.noiseKey.private))
	assert.deepEqual(decodeWire(encodeWire({ a: Buffer.from('hi') })), { a: Buffer.from('hi') })
})

test('creds.save is coalesced: one in flight, one pending with the latest full creds', async () => {
	const c = fakeConnector({ delayMs: 30 })
	const creds = initAuthCreds()
	const auth = new RpcAuthState('s1', c.caller, silentLogger, creds)
	auth.saveCreds()
	await new Promise(r => setTimeout(r, 5))
	for (let i = 1; i <= 5; i++) {
		creds.nextPreKeyId = 100 + i
		auth.saveCreds()
	}
	assert.equal(await auth.drain(2000), true)
	const saves = c.calls.filter(x => x.method === 'creds.save')
	assert.equal(saves.length, 2)
	assert.equal(saves[1].params.creds.nextPreKeyId, 105)
	assert.ok(saves[1].params.creds.noiseKey.private.type === 'Buffer', 'the whole creds object is sent')
})

test('drain waits for outstanding writes; after seal, writes fail loudly', async () => {
	const c = fakeConnector({ delayMs: 50 })
	const auth = new RpcAuthState('s1', c.caller, silentLogger, initAuthCreds())
	const p = auth.keys.set({ session: { 'a.0': { x: 1 } } })
	await new Promise(r => setTimeout(r, 5))
	assert.equal(auth.pendingWrites, 1)
	const t0 = Date.now()
	assert.equal(await auth.drain(1000), true)
	assert.ok(Date.now() - t0 >= 30)
	await p
	auth.seal('socket closed')
	await assert.rejects(auth.keys.set({ session: { 'b.0': { x: 2 } } }), /closed/)
	auth.saveCreds() // logged and ignored
	assert.equal(c.calls.filter(x => x.method === 'creds.save').length, 0)
})

test('drain gives up after its limit', async () => {
	const auth = new RpcAuthState('s1', { call: () => new Promise(() => {}) }, silentLogger, initAuthCreds())
	void auth.keys.set({ session: { 'a.0': { x: 1 } } })
	assert.equal(await auth.drain(30), false)
})

test('a failing creds.save is retried until stored, and reported once', async () => {
	const errors = []
	let failures = 2
	const saved = []
	const caller = {
		async call(method, params) {
			if (failures) { failures--; throw new Error('throttled') }
			saved.push(params.creds.registrationId)
			return {}
		}
	}
	const creds = initAuthCreds()
	const auth = new RpcAuthState('s1', caller, silentLogger, creds, { onError: m => errors.push(m) })
	auth.saveCreds()
	assert.equal(await auth.drain(10_000), true)
	assert.deepEqual(saved, [creds.registrationId])
	assert.equal(auth.credsStored, true)
	assert.equal(errors.length, 1)
	assert.match(errors[0], /creds\.save failed \(attempt 1, retried\): throttled/)
})

test('creds that never reach the store are reported as not stored once the drain gives up', async () => {
	const auth = new RpcAuthState('s1', { call: async () => { throw new Error('dynamo down') } }, silentLogger, initAuthCreds())
	auth.saveCreds()
	assert.equal(await auth.drain(800), false)
	assert.equal(auth.credsStored, false)
})
