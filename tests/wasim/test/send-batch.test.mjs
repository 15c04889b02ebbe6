// POST /messages/send-batch: validation before anything is sent, results in batch order, per-contact order kept,
// the same events as single sends, and every message reaching a real Baileys client.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { Wasim, pairByQr } from '../test-support/harness.mjs'

const ACCOUNT = { phone: '15550002222', lid: '99990002222' }
const OFFLINE = { phone: '15550002223', lid: '99990002223' }
const ALICE = { phone: '15557771001', lid: '88887771001', name: 'Alice' }
const BOB = { phone: '15557771002', lid: '88887771002', name: 'Bob' }

/** @type {Wasim} */
let wasim
/** @type {import('../test-support/harness.mjs').Client} */
let client

before(async () => {
	wasim = await Wasim.start()
	;({ client } = await pairByQr(wasim, ACCOUNT))
	// A second account that has logged in once and then went away: sends to it need if_offline "queue".
	const other = await pairByQr(wasim, OFFLINE)
	await other.client.close()
	for (const c of [ALICE, BOB]) await wasim.post('/contacts', c)
})
after(async () => {
	await client?.close()
	await wasim.stop()
})

/** @param {{ status: number, body: any }} res @param {number} status @param {string} code @param {RegExp} [message] */
function assertError(res, status, code, message) {
	assert.equal(res.status, status, JSON.stringify(res.body))
	assert.equal(res.body.error.code, code)
	if (message) assert.match(res.body.error.message, message)
}

test('bad batches are refused whole, naming the bad item; nothing is sent', async () => {
	const seq = await wasim.lastSeq()
	const ok = { from: ALICE.phone, to: ACCOUNT.phone, text: 'never sent' }
	assertError(await wasim.request('POST', '/messages/send-batch', {}), 400, 'bad_request', /messages must be an array/)
	assertError(await wasim.request('POST', '/messages/send-batch', { messages: 'x' }), 400, 'bad_request')
	assertError(await wasim.request('POST', '/messages/send-batch', { messages: [ok, { from: ALICE.phone, to: ACCOUNT.phone }] }), 400, 'bad_request', /^messages\[1\]: text/)
	assertError(await wasim.request('POST', '/messages/send-batch', { messages: [ok, ok, 7] }), 400, 'bad_request', /^messages\[2\]/)
	assertError(await wasim.request('POST', '/messages/send-batch', { messages: [ok, { ...ok, addressing: 'x' }] }), 400, 'bad_request', /^messages\[1\]: addressing/)
	assertError(await wasim.request('POST', '/messages/send-batch', { messages: Array(5001).fill(ok) }), 400, 'bad_request', /5000/)
	assertError(await wasim.request('POST', '/messages/send-batch', { messages: [ok, { ...ok, from: '15550009999' }] }), 404, 'not_found', /^messages\[1\]/)
	assertError(await wasim.request('POST', '/messages/send-batch', { messages: [{ ...ok, to: OFFLINE.phone }] }), 409, 'not_connected', /^messages\[0\]/)
	assertError(await wasim.request('GET', '/messages/send-batch'), 405, 'method_not_allowed')
	const { events } = await wasim.get(`/events?type=message.incoming_sent&after=${seq}`)
	assert.equal(events.length, 0)
	assert.deepEqual(await wasim.post('/messages/send-batch', { messages: [] }), { results: [] })
})

test('a batch from two contacts arrives complete, in order per contact, with results in batch order', async () => {
	const seq = await wasim.lastSeq()
	const from = client.mark()
	const messages = []
	for (let i = 0; i < 60; i++) {
		const who = i % 3 === 0 ? BOB : ALICE
		messages.push({ from: who.phone, to: ACCOUNT.phone, text: `batch ${i}`, ...(i === 1 ? { id: '3EB0BA7C4000000001', addressing: 'lid' } : {}) })
	}
	const { results } = await wasim.post('/messages/send-batch', { messages })
	assert.equal(results.length, messages.length)
	assert.equal(results[1].id, '3EB0BA7C4000000001')
	// Each contact's first message starts its Signal session.
	assert.equal(results[0].enc, 'pkmsg')
	assert.equal(results[1].enc, 'pkmsg')
	assert.ok(results.slice(2).every((/** @type {any} */ r) => r.enc === 'pkmsg' || r.enc === 'msg'))
	assert.ok(results.every((/** @type {any} */ r) => r.queued === false && typeof r.id === 'string'))
	assert.equal(new Set(results.map((/** @type {any} */ r) => r.id)).size, messages.length)

	// The simulator reports each message like a single send, and writes one contact's messages in batch order.
	const { events } = await wasim.get(`/events?type=message.incoming_sent&after=${seq}`)
	assert.equal(events.length, messages.length)
	for (const who of [ALICE, BOB]) {
		const want = results.filter((/** @type {any} */ _r, /** @type {number} */ i) => messages[i].from === who.phone).map((/** @type {any} */ r) => r.id)
		assert.deepEqual(events.filter((/** @type {any} */ e) => e.data.from === who.phone).map((/** @type {any} */ e) => e.data.id), want)
	}
	assert.equal(events.find((/** @type {any} */ e) => e.data.id === '3EB0BA7C4000000001').data.addressing, 'lid')
	// Every message is a pkmsg until the account answers, but each contact's phone hands over its token once.
	const tokens = await wasim.get(`/events?type=privacy_token.sent&after=${seq}`)
	assert.deepEqual(tokens.events.map((/** @type {any} */ e) => e.data.from).sort(), [ALICE.phone, BOB.phone])

	// Baileys decrypts every one of them (so the Signal sessions advanced in the order they were written).
	await client.waitFor('messages.upsert', () => client.events.slice(from).filter(e => e.name === 'messages.upsert' && /^batch /.test(e.data.text)).length === messages.length, { from })
	const texts = client.events.slice(from).filter(e => e.name === 'messages.upsert' && e.data.key.remoteJid === `${BOB.phone}@s.whatsapp.net`).map(e => e.data.text)
	assert.deepEqual(texts, messages.filter(m => m.from === BOB.phone).map(m => m.text))
})

test('if_offline "queue" items are queued and delivered at the next login', async () => {
	const { results } = await wasim.post('/messages/send-batch', {
		messages: [
			{ from: ALICE.phone, to: OFFLINE.phone, text: 'queued 1', if_offline: 'queue' },
			{ from: ALICE.phone, to: ACCOUNT.phone, text: 'live 1' }
		]
	})
	assert.equal(results[0].queued, true)
	assert.equal(results[1].queued, false)
	await client.waitFor('messages.upsert', m => m.text === 'live 1')
})
