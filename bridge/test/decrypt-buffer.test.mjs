import { test } from 'node:test'
import assert from 'node:assert/strict'
import { addTransactionCapability } from 'baileys'
import { DecryptBuffer, DECRYPTED_TYPE, ciphertextId, storeOutage } from '../dist/decrypt-buffer.js'
import { RpcError } from '../dist/protocol.js'
import { silentLogger } from './helpers.mjs'

/** a key store that records every set call, under Baileys' own transaction layer */
function store() {
	const data = {}
	const sets = []
	const raw = {
		get: async (type, ids) => Object.fromEntries(ids.filter(id => data[type]?.[id] != null).map(id => [id, data[type][id]])),
		set: async mutations => {
			sets.push(JSON.parse(JSON.stringify(Object.keys(mutations).sort())))
			for (const [type, values] of Object.entries(mutations)) {
				data[type] ??= {}
				for (const [id, v] of Object.entries(values)) {
					if (v === null) delete data[type][id]
					else data[type][id] = v
				}
			}
		}
	}
	return { data, sets, keys: addTransactionCapability(raw, silentLogger, { maxCommitRetries: 1, delayBetweenTriesMs: 1 }) }
}

const decrypt = (buffer, keys, id, fn) => buffer.decrypt(keys, 'jid', id, fn)

test('the plaintext is stored in the same commit as the ratchet state its decryption consumed', async () => {
	const { data, sets, keys } = store()
	const buffer = new DecryptBuffer(silentLogger)
	buffer.caughtUp()
	const id = ciphertextId('msg', Buffer.from('cipher'))
	const out = await decrypt(buffer, keys, id, async () => {
		await keys.set({ session: { 'a.0': Buffer.from('ratchet') } })
		return Buffer.from('plain')
	})
	assert.equal(Buffer.from(out).toString(), 'plain')
	assert.deepEqual(sets, [[DECRYPTED_TYPE, 'session']], 'one commit carries both')
	assert.equal(Buffer.from(data[DECRYPTED_TYPE][id]).toString(), 'plain')
	assert.deepEqual(buffer.takeDecrypted(), [id])
})

test('a ciphertext whose keys are used up is answered from the buffer; an unknown one still fails', async () => {
	const { keys } = store()
	const buffer = new DecryptBuffer(silentLogger)
	buffer.caughtUp()
	const id = ciphertextId('pkmsg', Buffer.from('c1'))
	await decrypt(buffer, keys, id, async () => Buffer.from('first'))
	buffer.takeDecrypted()
	const used = async () => { throw new Error('Key used already or never filled') }
	assert.equal(Buffer.from(await decrypt(buffer, keys, id, used)).toString(), 'first')
	assert.equal(buffer.hits, 1)
	assert.deepEqual(buffer.takeDecrypted(), [id], 'attributed to the receipt that follows')
	await assert.rejects(decrypt(buffer, keys, ciphertextId('msg', Buffer.from('other')), used), /Key used already/)
})

test('while catching up after login the buffer is consulted before decrypting', async () => {
	const { keys } = store()
	const buffer = new DecryptBuffer(silentLogger)
	const id = ciphertextId('msg', Buffer.from('c2'))
	await decrypt(buffer, keys, id, async () => Buffer.from('once'))
	let called = false
	const out = await decrypt(buffer, keys, id, async () => { called = true; return Buffer.from('twice') })
	assert.equal(Buffer.from(out).toString(), 'once')
	assert.equal(called, false, 'a redelivered ciphertext is not decrypted again')
})

test('released messages clear their entries in one batched write', async () => {
	const { data, keys } = store()
	const buffer = new DecryptBuffer(silentLogger)
	buffer.makeRepository({ creds: {}, keys }, silentLogger)
	buffer.caughtUp()
	const ids = ['x', 'y'].map(c => ciphertextId('msg', Buffer.from(c)))
	for (const id of ids) await decrypt(buffer, keys, id, async () => Buffer.from(id))
	buffer.onReleased(ids)
	assert.equal(Object.keys(data[DECRYPTED_TYPE]).length, 2, 'batched, not written at once')
	await buffer.flush()
	assert.deepEqual(data[DECRYPTED_TYPE], {})
})

test('clears of released messages ride along in the next decryption\'s commit', async () => {
	const { data, sets, keys } = store()
	const buffer = new DecryptBuffer(silentLogger)
	buffer.makeRepository({ creds: {}, keys }, silentLogger)
	buffer.caughtUp()
	const first = ciphertextId('msg', Buffer.from('one'))
	await decrypt(buffer, keys, first, async () => Buffer.from('one'))
	buffer.onReleased([first])
	const second = ciphertextId('msg', Buffer.from('two'))
	await decrypt(buffer, keys, second, async () => Buffer.from('two'))
	assert.equal(sets.length, 2, 'no write of its own for the clear')
	assert.deepEqual(Object.keys(data[DECRYPTED_TYPE]), [second])
	await buffer.flush()
	assert.equal(sets.length, 2, 'nothing left to clear')
})

test('a decryption whose commit the store refuses during an outage is decrypted again once it answers', async () => {
	const data = {}
	const sets = []
	let refusals = 2
	const raw = {
		get: async () => ({}),
		set: async mutations => {
			if (refusals-- > 0) throw new RpcError('internal', 'keys.set: StoreError: throttled', { retryable: true })
			sets.push(Object.keys(mutations).sort())
			for (const [type, values] of Object.entries(mutations)) Object.assign((data[type] ??= {}), values)
		}
	}
	const keys = addTransactionCapability(raw, silentLogger, { maxCommitRetries: 1, delayBetweenTriesMs: 1 })
	const buffer = new DecryptBuffer(silentLogger, 10_000)
	buffer.caughtUp()
	let attempts = 0
	const id = ciphertextId('msg', Buffer.from('c'))
	const out = await decrypt(buffer, keys, id, async () => {
		attempts++
		await keys.set({ session: { 'a.0': Buffer.from(`ratchet`) } })
		return Buffer.from('plain')
	})
	assert.equal(Buffer.from(out).toString(), 'plain')
	assert.equal(attempts, 3, 'the whole transaction again, twice')
	assert.deepEqual(sets, [[DECRYPTED_TYPE, 'session']], 'stored once, together')
})

test('a refusal that is not an outage fails the decryption at once, and so does an outage past the patience', async () => {
	const refuse = err => addTransactionCapability({ get: async () => ({}), set: async () => { throw err } }, silentLogger, { maxCommitRetries: 1, delayBetweenTriesMs: 1 })
	const attempt = async (err, patienceMs) => {
		const buffer = new DecryptBuffer(silentLogger, patienceMs)
		buffer.caughtUp()
		let attempts = 0
		const keys = refuse(err)
		await assert.rejects(decrypt(buffer, keys, 'x', async () => { attempts++; await keys.set({ session: { a: Buffer.from('r') } }); return Buffer.from('p') }))
		return attempts
	}
	assert.equal(await attempt(new RpcError('internal', 'keys.set: SessionGone: lease lost'), 10_000), 1)
	assert.equal(await attempt(new RpcError('not_connected', 'key store closed'), 10_000), 1)
	assert.equal(await attempt(new Error('Bad MAC'), 10_000), 1)
	assert.equal(await attempt(new RpcError('internal', 'StoreError', { retryable: true }), 0), 1, 'no patience: no retry')
	assert.ok(storeOutage(new RpcError('timeout', 'keys.get got no answer')))
})
