import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Mutex } from 'async-mutex'
import { MessageOrder } from '../dist/message-order.js'
import { silentLogger } from './helpers.mjs'

const stanza = (id, from = '1@s.whatsapp.net', recipient) => ({ tag: 'message', attrs: { id, from, ...(recipient ? { recipient } : {}) } })
/** Baileys' makeMutex: async-mutex's runExclusive, first come first served */
const mutex = () => { const m = new Mutex(); return { mutex: code => m.runExclusive(code) } }
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

/** Baileys' handleMessage in miniature: its own awaits (of `delays[id]` ms), then the message mutex, where it "emits" */
function handler(order, mutex, emitted, delays) {
	return order.wrap(async node => {
		await sleep(delays[node.attrs.id] ?? 0)
		if (node.attrs.skip) return // an early return before the mutex (an ignored msmsg, an error)
		await order.inTurn(node, mutex).mutex(async () => {
			emitted.push(node.attrs.id)
		})
	})
}

test("a chat's messages enter the mutex in the order they arrived, whatever their own awaits took", async () => {
	for (const withOrder of [true, false]) {
		const order = new MessageOrder(silentLogger)
		const emitted = []
		const delays = { a1: 60, a2: 30, b1: 50 }
		const handle = handler(order, mutex(), emitted, delays)
		const nodes = [stanza('a1'), stanza('a2'), stanza('a3'), stanza('b1', '2@s.whatsapp.net'), stanza('b2', '2@s.whatsapp.net')]
		if (withOrder) nodes.forEach(n => order.arrive(n))
		await Promise.all(nodes.map(n => handle(n)))
		const chatA = emitted.filter(id => id.startsWith('a'))
		if (withOrder) {
			assert.deepEqual(chatA, ['a1', 'a2', 'a3'])
			assert.deepEqual(emitted.filter(id => id.startsWith('b')), ['b1', 'b2'])
			assert.ok(emitted.indexOf('b2') < emitted.indexOf('a1'), 'another chat does not wait')
			assert.equal(order.pendingChats, 0)
		} else {
			assert.deepEqual(chatA, ['a3', 'a2', 'a1'], 'the control: without tickets the fastest goes first')
		}
	}
})

test('an offline message handled late still goes before a live one of its chat that arrived after it', async () => {
	const order = new MessageOrder(silentLogger)
	const emitted = []
	const handle = handler(order, mutex(), emitted, {})
	const offline = stanza('old')
	order.arrive(offline) // queued by Baileys' offline processor, handled later
	const live = stanza('new')
	order.arrive(live)
	const liveDone = handle(live)
	await sleep(30)
	assert.deepEqual(emitted, [], 'the live one waits')
	await handle(offline)
	await liveDone
	assert.deepEqual(emitted, ['old', 'new'])
})

test('a message that never reaches the mutex releases its chat; a stuck one is passed after the wait', async () => {
	const order = new MessageOrder(silentLogger, 50)
	const emitted = []
	const handle = handler(order, mutex(), emitted, {})
	const skipped = stanza('s')
	skipped.attrs.skip = true
	const after = stanza('t')
	order.arrive(skipped)
	order.arrive(after)
	await Promise.all([handle(after), handle(skipped)])
	assert.deepEqual(emitted, ['t'])

	const stuck = stanza('stuck')
	const next = stanza('next')
	order.arrive(stuck) // never handled (its socket's offline queue stopped)
	order.arrive(next)
	await handle(next)
	assert.deepEqual(emitted, ['t', 'next'])
	assert.equal(order.gaveUp, 1)
})

test('messages the account sent from another device are ordered by their chat, not with the account', async () => {
	const order = new MessageOrder(silentLogger)
	const emitted = []
	const handle = handler(order, mutex(), emitted, { toA: 40 })
	const me = '9@s.whatsapp.net'
	const toA = stanza('toA', me, '1@s.whatsapp.net')
	const toB = stanza('toB', me, '2@s.whatsapp.net')
	order.arrive(toA)
	order.arrive(toB)
	await Promise.all([handle(toA), handle(toB)])
	assert.deepEqual(emitted, ['toB', 'toA'])
})
