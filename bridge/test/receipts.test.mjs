import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ReceiptGate, receiptIds } from '../dist/receipts.js'

function gate() {
	const sent = []
	const cleared = []
	const errors = []
	let decrypted = []
	const g = new ReceiptGate({
		takeDecrypted: () => { const d = decrypted; decrypted = []; return d },
		onReleased: ids => cleared.push(...ids),
		onSendError: (err, ids) => errors.push(ids)
	})
	const send = async node => { sent.push(node) }
	return { g, sent, cleared, errors, send, decrypt: id => decrypted.push(id) }
}

const receipt = (id, type, more = []) => ({
	tag: 'receipt',
	attrs: { id, to: '1@s.whatsapp.net', ...(type ? { type } : {}) },
	content: more.length ? [{ tag: 'list', attrs: {}, content: more.map(m => ({ tag: 'item', attrs: { id: m } })) }] : undefined
})

test('a delivery receipt is held until its message is released; read and retry receipts go at once', async () => {
	const { g, sent, send } = gate()
	await g.gate(receipt('A'), send)
	await g.gate(receipt('B', 'inactive'), send)
	await g.gate(receipt('R', 'read'), send)
	await g.gate(receipt('X', 'retry'), send)
	assert.deepEqual(sent.map(n => n.attrs.id), ['R', 'X'])
	assert.equal(g.heldCount, 2)
	assert.equal(g.release(['B', 'unknown']), 1)
	assert.deepEqual(sent.map(n => n.attrs.id), ['R', 'X', 'B'])
	g.release(['A'])
	assert.deepEqual(sent.map(n => n.attrs.id), ['R', 'X', 'B', 'A'])
	assert.equal(g.heldCount, 0)
})

test('a receipt naming several messages waits for all of them; a second receipt for one id waits too', async () => {
	const { g, sent, send } = gate()
	assert.deepEqual(receiptIds(receipt('A', undefined, ['B', 'C'])), ['A', 'B', 'C'])
	await g.gate(receipt('A', undefined, ['B']), send)
	await g.gate(receipt('A', 'hist_sync'), send)
	g.release(['A'])
	assert.deepEqual(sent.map(n => n.attrs.type ?? 'delivery'), ['hist_sync'])
	g.release(['B'])
	assert.deepEqual(sent.map(n => n.attrs.type ?? 'delivery'), ['hist_sync', 'delivery'])
})

test('released messages clear their buffered plaintext; a close drops what is held and wakes a drain', async () => {
	const { g, sent, cleared, send, decrypt } = gate()
	decrypt('h1')
	await g.gate(receipt('A'), send)
	await g.gate(receipt('B'), send)
	g.release(['A'])
	assert.deepEqual(cleared, ['h1'])
	assert.equal(await g.drained(20), false)
	const drained = g.drained(5000)
	assert.deepEqual(g.close(), ['B'])
	assert.equal(await drained, true)
	g.release(['B'])
	await g.gate(receipt('C'), send)
	assert.deepEqual(sent.map(n => n.attrs.id), ['A'], 'nothing goes out on a closed socket')
})

test('a held receipt that cannot be sent any more is reported, not thrown', async () => {
	const { g, errors } = gate()
	await g.gate(receipt('A'), async () => { throw new Error('Connection Closed') })
	g.release(['A'])
	await new Promise(r => setImmediate(r))
	assert.deepEqual(errors, [['A']])
})
