// Delivery guarantees as WhatsApp gives them: the server holds a contact's message until the account's device
// receipts it and delivers it again, byte for byte, at the device's next login; a contact's phone drops a second
// message with an id it already has.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Client, pairedFixture } from '../test-support/harness.mjs'

const ACCOUNT = { phone: '15550003333', lid: '99990003333', device: 2 }
const ALICE = { phone: '15557772001', lid: '88887772001', name: 'Alice' }
const BOB = { phone: '15557772002', lid: '88887772002', name: 'Bob' }

const fx = pairedFixture(ACCOUNT, [ALICE, BOB])

const pending = async () => (await fx.wasim.get(`/messages/pending?account=${ACCOUNT.phone}`)).pending
/** @param {string} text */
const send = (text, extra = {}) => fx.wasim.post('/messages/send', { from: ALICE.phone, to: ACCOUNT.phone, text, ...extra })

/**
 * Replace the client by a crash: the process dies at once, its socket with it; a new process with `auth` (the
 * store as it was) logs in again.
 * @param {string} auth exported auth state
 * @param {() => Promise<void>} [whileDown] run once the simulator saw the connection close
 */
async function crashAndRestart(auth, whileDown) {
	const seq = await fx.wasim.lastSeq()
	await fx.client.kill()
	await fx.wasim.waitEvent('connection.closed', { account: ACCOUNT.phone }, seq)
	await whileDown?.()
	fx.client = new Client(fx.wasim.ready.root_pub)
	await fx.client.call('importAuth', { json: auth })
	await fx.client.connectOpen(fx.wasim.ready.ws_url)
}

test('a message is held until Baileys receipts it, then released (message.receipted)', async () => {
	const seq = await fx.wasim.lastSeq()
	const { id } = await send('held until receipted')
	await fx.client.waitFor('messages.upsert', m => m.key.id === id)
	const receipted = await fx.wasim.waitEvent('message.receipted', { id }, seq)
	// markOnlineOnConnect: false, so Baileys' delivery receipts are type "inactive".
	assert.deepEqual(receipted.data, { account: ACCOUNT.phone, from: ALICE.phone, id, type: 'inactive' })
	assert.deepEqual(await pending(), [])
	const { events } = await fx.wasim.get(`/events?type=message.redelivered&after=${seq}`)
	assert.equal(events.length, 0)
})

test('messages never receipted are delivered again at the next login: same ids, in order, offline, then the queued one', async () => {
	const auth = await fx.client.call('exportAuth')
	// Frozen, the client reads nothing: the messages reach its socket but are never decrypted nor receipted.
	fx.client.freeze()
	const live = []
	for (const text of ['unreceipted 1', 'unreceipted 2', 'unreceipted 3']) live.push(await send(text))
	const held = await pending()
	assert.deepEqual(held.map((/** @type {any} */ m) => [m.from, m.id, m.enc, m.deliveries]), live.map(m => [ALICE.phone, m.id, m.enc, 1]))
	assert.ok(held.every((/** @type {any} */ m) => typeof m.sent_at === 'number' && m.sent_at <= Date.now()))

	const seq = await fx.wasim.lastSeq()
	/** @type {any} */
	let queued
	await crashAndRestart(auth, async () => {
		queued = await fx.wasim.post('/messages/send', { from: BOB.phone, to: ACCOUNT.phone, text: 'queued meanwhile', if_offline: 'queue' })
		assert.equal(queued.queued, true)
		assert.equal((await pending()).length, 4)
	})
	const ids = [...live.map(m => m.id), queued.id]
	await fx.client.waitFor('messages.upsert', () => fx.client.events.filter(e => e.name === 'messages.upsert' && ids.includes(e.data.key.id)).length === ids.length)
	const upserts = fx.client.events.filter(e => e.name === 'messages.upsert' && ids.includes(e.data.key.id)).map(e => e.data)
	assert.deepEqual(upserts.map(u => [u.key.id, u.text, u.type]), [
		[live[0].id, 'unreceipted 1', 'append'],
		[live[1].id, 'unreceipted 2', 'append'],
		[live[2].id, 'unreceipted 3', 'append'],
		[queued.id, 'queued meanwhile', 'append']
	])
	await fx.client.waitFor('connection.update', u => u.receivedPendingNotifications === true)

	const sent = (await fx.wasim.get(`/events?type=message.incoming_sent&after=${seq}`)).events.map((/** @type {any} */ e) => e.data)
	assert.deepEqual(sent.map((/** @type {any} */ d) => [d.id, d.offline, d.redelivery]), [
		[live[0].id, true, true],
		[live[1].id, true, true],
		[live[2].id, true, true],
		[queued.id, true, undefined]
	])
	const redelivered = (await fx.wasim.get(`/events?type=message.redelivered&after=${seq}`)).events.map((/** @type {any} */ e) => e.data)
	assert.deepEqual(redelivered, live.map(m => ({ account: ACCOUNT.phone, from: ALICE.phone, id: m.id })))
	for (const id of ids) await fx.wasim.waitEvent('message.receipted', { id }, seq)
	assert.deepEqual(await pending(), [])
})

test('a redelivered message whose keys Baileys already used is NACKed, not upserted, and stays held', async () => {
	const seq = await fx.wasim.lastSeq()
	// The client decrypts and its store writes the advanced ratchet, but it never gets to send the receipt.
	await fx.client.call('stallKeyWrites')
	const { id } = await send('decrypted, never receipted')
	await fx.client.waitFor('keys.stalled')
	const auth = await fx.client.call('exportAuth')
	assert.equal((await pending())[0]?.id, id)

	for (const deliveries of [2, 3]) {
		const mark = await fx.wasim.lastSeq()
		await crashAndRestart(auth)
		// The same ciphertext again: its message key is gone, so Baileys answers with a NACK (487, parsing error).
		const nack = await fx.wasim.waitEvent('message.ack', { id }, mark)
		assert.deepEqual(nack.data, { account: ACCOUNT.phone, from: ALICE.phone, id, error: '487' })
		const held = await pending()
		assert.deepEqual(held.map((/** @type {any} */ m) => [m.id, m.deliveries]), [[id, deliveries]])
	}
	assert.ok(!fx.client.events.some(e => e.name === 'messages.upsert' && e.data.key.id === id), 'never upserted again')
	const { events } = await fx.wasim.get(`/events?type=message.receipted&after=${seq}`)
	assert.ok(!events.some((/** @type {any} */ e) => e.data.id === id))
	// A fresh send still gets through (the session itself is fine).
	const next = await send('after the nack')
	await fx.client.waitFor('messages.upsert', m => m.key.id === next.id)
})

test('a message id a contact already has is a duplicate: counted, receipted, not reported as a new message', async () => {
	const seq = await fx.wasim.lastSeq()
	const id = '3EB0D0B1E0000000000001'
	const mark = fx.client.mark()
	for (let i = 0; i < 3; i++) await fx.client.call('send', { jid: `${BOB.phone}@s.whatsapp.net`, text: `same id ${i}`, id })
	const dups = []
	for (let i = 0; i < 2; i++) dups.push(await fx.wasim.waitEvent('message.duplicate', { id }, dups.at(-1)?.seq ?? seq))
	assert.deepEqual(dups.map(e => e.data), [
		{ account: ACCOUNT.phone, to: BOB.phone, id, count: 2 },
		{ account: ACCOUNT.phone, to: BOB.phone, id, count: 3 }
	])
	const outgoing = (await fx.wasim.get(`/events?type=message.outgoing&after=${seq}`)).events
	assert.deepEqual(outgoing.map((/** @type {any} */ e) => [e.data.id, e.data.text, e.data.retry]), [[id, 'same id 0', false]])
	const { messages } = await fx.wasim.get(`/contacts/${BOB.phone}/received?account=${ACCOUNT.phone}`)
	const entry = messages.find((/** @type {any} */ m) => m.id === id)
	assert.equal(entry.count, 3)
	assert.equal(entry.text, 'same id 0')
	assert.equal(entry.account, ACCOUNT.phone)
	assert.equal(typeof entry.at, 'number')
	assert.equal((await fx.wasim.get('/stats')).duplicates, 2)
	// The contact confirms what it already has too: Baileys sees the message delivered (a messages.update, or the
	// status folded into its own 'append' upsert while that is still buffered).
	await fx.client.waitFor(
		['messages.update', 'messages.upsert'],
		(data, name) => (name === 'messages.update' ? data.some((/** @type {any} */ u) => u.key.id === id && u.status >= 3) : data.key.id === id && data.status >= 3),
		{ from: mark }
	)
	// By LID too, and per contact: another contact may get the same id as a new message.
	await fx.client.call('send', { jid: `${ALICE.lid}@lid`, text: 'same id to alice', id })
	await fx.wasim.waitEvent('message.outgoing', { id, to: ALICE.phone }, seq)
	assert.equal((await fx.wasim.get(`/contacts/${ALICE.lid}/received`)).messages.find((/** @type {any} */ m) => m.id === id).count, 1)
})

test('pending, received and fail-next-decrypt validate their input', async () => {
	/** @param {{ status: number, body: any }} res @param {number} status */
	const is = (res, status) => assert.equal(res.status, status, JSON.stringify(res.body))
	is(await fx.wasim.request('GET', '/messages/pending'), 400)
	is(await fx.wasim.request('GET', '/messages/pending?account=abc'), 400)
	is(await fx.wasim.request('GET', '/messages/pending?account=15550009999'), 404)
	is(await fx.wasim.request('POST', '/messages/pending', {}), 405)
	is(await fx.wasim.request('GET', '/contacts/15550009999/received'), 404)
	is(await fx.wasim.request('GET', '/contacts/abc/received'), 400)
	is(await fx.wasim.request('GET', '/contacts/%E0/received'), 400)
	is(await fx.wasim.request('GET', `/contacts/${ALICE.phone}/received?account=15550009999`), 404)
	is(await fx.wasim.request('POST', '/contacts/fail-next-decrypt', { account: ACCOUNT.phone }), 400)
	is(await fx.wasim.request('POST', '/contacts/fail-next-decrypt', { contact: ALICE.phone, account: ACCOUNT.phone, times: 0 }), 400)
	is(await fx.wasim.request('POST', '/contacts/fail-next-decrypt', { contact: '15550009999', account: ACCOUNT.phone }), 404)
	is(await fx.wasim.request('POST', '/contacts/fail-next-decrypt', { contact: ALICE.phone, account: '15550009999' }), 404)
	is(await fx.wasim.request('GET', '/contacts/fail-next-decrypt'), 405)
})
