// Retry receipts both ways against real Baileys: a device that cannot decrypt a message asks for it again with
// <receipt type="retry">, and the sender encrypts it afresh (same id) and sends it once more.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { pairedFixture } from '../test-support/harness.mjs'

const ACCOUNT = { phone: '15550004444', lid: '99990004444', device: 2 }
const ALICE = { phone: '15557773001', lid: '88887773001', name: 'Alice' }
const BOB = { phone: '15557773002', lid: '88887773002', name: 'Bob' }
const ALICE_JID = `${ALICE.phone}@s.whatsapp.net`

// A conversation both ways first, so Alice's session with the account is confirmed and her messages are plain `msg`.
const fx = pairedFixture(ACCOUNT, [ALICE, BOB], async ({ wasim, client }) => {
	await wasim.post('/messages/send', { from: ALICE.phone, to: ACCOUNT.phone, text: 'hello' })
	await client.waitFor('messages.upsert', m => m.text === 'hello')
	await client.call('send', { jid: ALICE_JID, text: 'hello back' })
	await wasim.waitEvent('message.outgoing', { text: 'hello back' })
})

/** @param {string} type @param {number} seq */
const eventsOf = async (type, seq) => (await fx.wasim.get(`/events?type=${type}&after=${seq}`)).events.map((/** @type {any} */ e) => e.data)

test('Baileys lost its session: the contact re-sends on its session, then on a new one from the receipt keys', async () => {
	const seq = await fx.wasim.lastSeq()
	assert.ok((await fx.client.call('dropSessions')) >= 1)
	const from = fx.client.mark()
	const { id, enc } = await fx.wasim.post('/messages/send', { from: ALICE.phone, to: ACCOUNT.phone, text: 'after the loss' })
	assert.equal(enc, 'msg')
	const upsert = await fx.client.waitFor('messages.upsert', m => m.key.id === id && m.text === 'after the loss', { from })
	assert.equal(upsert.type, 'notify')
	// Retry 1 carries only the registration id (the same): the contact uses its current session, which Baileys no
	// longer has. Retry 2 carries Baileys' keys: a new session, so a pkmsg, which decrypts.
	assert.deepEqual(await eventsOf('message.retry_resent', seq), [
		{ account: ACCOUNT.phone, from: ALICE.phone, id, count: 1, enc: 'msg' },
		{ account: ACCOUNT.phone, from: ALICE.phone, id, count: 2, enc: 'pkmsg' }
	])
	// Each failed copy was NACKed (500) after its retry receipt; the decrypted one is receipted and released.
	assert.deepEqual((await eventsOf('message.ack', seq)).map(a => [a.id, a.error]), [[id, '500'], [id, '500']])
	const receipted = await fx.wasim.waitEvent('message.receipted', { id }, seq)
	assert.equal(receipted.data.type, 'inactive')
	assert.deepEqual((await fx.wasim.get(`/messages/pending?account=${ACCOUNT.phone}`)).pending, [])
	// Before the content, Baileys upserted a decryption-failure stub (no text) under the same id for each failure.
	const stubs = fx.client.events.slice(from).filter(e => e.name === 'messages.upsert' && e.data.key.id === id && e.data.text === null)
	assert.equal(stubs.length, 2)
	const { events } = await fx.wasim.get(`/events?type=message.incoming_sent&after=${seq}`)
	assert.equal(events.length, 1, 're-sends are message.retry_resent, not new incoming messages')
})

test('a retry receipt with another registration id (reinstalled app) makes the contact start a new session at once', async () => {
	// Answer first: the contact's new session (from the last test) is confirmed, so its next message is a `msg`.
	await fx.client.call('send', { jid: ALICE_JID, text: 'confirming' })
	await fx.wasim.waitEvent('message.outgoing', { text: 'confirming' })
	const seq = await fx.wasim.lastSeq()
	await fx.client.call('dropSessions')
	await fx.client.call('setRegistrationId', { id: 4242 })
	const from = fx.client.mark()
	const { id, enc } = await fx.wasim.post('/messages/send', { from: ALICE.phone, to: ACCOUNT.phone, text: 'reinstalled' })
	assert.equal(enc, 'msg')
	await fx.client.waitFor('messages.upsert', m => m.key.id === id && m.text === 'reinstalled', { from })
	assert.deepEqual(await eventsOf('message.retry_resent', seq), [{ account: ACCOUNT.phone, from: ALICE.phone, id, count: 1, enc: 'pkmsg' }])
})

test('the contact cannot decrypt once: its retry receipt (with keys) makes Baileys re-send, reported with retry: true', async () => {
	const seq = await fx.wasim.lastSeq()
	await fx.wasim.post('/contacts/fail-next-decrypt', { contact: ALICE.phone, account: ACCOUNT.phone })
	const mark = fx.client.mark()
	const key = /** @type {any} */ (await fx.client.call('send', { jid: ALICE_JID, text: 'second try' }))
	const out = await fx.wasim.waitEvent('message.outgoing', { id: key.id }, seq)
	assert.equal(out.data.text, 'second try')
	assert.equal(out.data.retry, true)
	// Baileys built a new session from the keys in the receipt, so the re-send is a pkmsg.
	assert.equal(out.data.enc, 'pkmsg')
	const asked = await eventsOf('message.retry_requested', seq)
	assert.deepEqual(asked, [{ account: ACCOUNT.phone, to: ALICE.phone, id: key.id, count: 1, error: 'decryption failure forced by /contacts/fail-next-decrypt' }])
	assert.equal((await eventsOf('message.outgoing', seq)).length, 1)
	assert.deepEqual(await eventsOf('message.undecryptable', seq), [])
	assert.deepEqual(await eventsOf('message.duplicate', seq), [])
	// The re-send came from Baileys' recent-message cache: getMessage was not needed.
	assert.ok(!fx.client.events.slice(mark).some(e => e.name === 'getMessage'))
	// Only the next message failed: the one after goes through at once.
	const next = /** @type {any} */ (await fx.client.call('send', { jid: ALICE_JID, text: 'first try' }))
	const ok = await fx.wasim.waitEvent('message.outgoing', { id: next.id }, seq)
	assert.equal(ok.data.retry, false)
})

test('without its recent-message cache Baileys re-sends what its getMessage hook returns', async () => {
	const seq = await fx.wasim.lastSeq()
	await fx.client.call('end')
	await fx.wasim.waitEvent('connection.closed', { account: ACCOUNT.phone }, seq)
	await fx.client.connectOpen(fx.wasim.ready.ws_url, { recentCache: false })
	await fx.wasim.post('/contacts/fail-next-decrypt', { contact: BOB.phone, account: ACCOUNT.phone })
	const mark = fx.client.mark()
	const key = /** @type {any} */ (await fx.client.call('send', { jid: `${BOB.lid}@lid`, text: 'via getMessage' }))
	const out = await fx.wasim.waitEvent('message.outgoing', { id: key.id }, seq)
	assert.equal(out.data.retry, true)
	assert.equal(out.data.stanza_to, `${BOB.lid}@lid`)
	assert.deepEqual(fx.client.events.slice(mark).filter(e => e.name === 'getMessage').map(e => e.data), [{ id: key.id, found: true }])
})

test('Baileys re-sends a message at most twice; the contact then reports it undecryptable', async () => {
	const seq = await fx.wasim.lastSeq()
	await fx.wasim.post('/contacts/fail-next-decrypt', { contact: ALICE.phone, account: ACCOUNT.phone, times: 5 })
	const key = /** @type {any} */ (await fx.client.call('send', { jid: ALICE_JID, text: 'never readable' }))
	const gone = await fx.wasim.waitEvent('message.undecryptable', { id: key.id }, seq, 30_000)
	assert.equal(gone.data.to, ALICE.phone)
	assert.match(gone.data.error, /forced.*no re-send within 10 s of retry receipt 3/)
	// rc14 counts each retry receipt twice (in handleReceipt and in sendMessagesAgain) against maxMsgRetryCount 5.
	assert.deepEqual((await eventsOf('message.retry_requested', seq)).map(r => r.count), [1, 2, 3])
	assert.deepEqual(await eventsOf('message.outgoing', seq), [])
})
