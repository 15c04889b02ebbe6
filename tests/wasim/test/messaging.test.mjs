// Encrypted 1:1 messages in both directions, LID mapping news, receipts and the offline queue.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { Wasim, pairByQr } from '../test-support/harness.mjs'

const ACCOUNT = { phone: '15550001111', lid: '99990001111', device: 3 }
const ALICE = { phone: '15557770001', lid: '88887770001', name: 'Alice' }
const BOB = { phone: '15557770002', lid: '88887770002', name: 'Bob' }

/** @type {Wasim} */
let wasim
/** @type {import('../test-support/harness.mjs').Client} */
let client

before(async () => {
	wasim = await Wasim.start()
	;({ client } = await pairByQr(wasim, ACCOUNT))
	for (const c of [ALICE, BOB]) await wasim.post('/contacts', c)
})
after(async () => {
	await client?.close()
	await wasim.stop()
})

/** @param {string} text */
const upsertWithText = text => client.waitFor('messages.upsert', m => m.text === text)

test('contacts are idempotent per phone and listed', async () => {
	const again = await wasim.post('/contacts', ALICE)
	assert.deepEqual(again.contact, {
		phone: ALICE.phone,
		lid: ALICE.lid,
		name: 'Alice',
		jid: '15557770001@s.whatsapp.net',
		lid_jid: '88887770001@lid'
	})
	const clash = await wasim.request('POST', '/contacts', { phone: ALICE.phone, lid: '123456789' })
	assert.equal(clash.status, 409)
	const { contacts } = await wasim.get('/contacts')
	assert.equal(contacts.length, 2)
})

test('PN-addressed sender: pkmsg then more, key carries remoteJidAlt and addressingMode pn', async () => {
	const first = await wasim.post('/messages/send', { from: ALICE.phone, to: ACCOUNT.phone, text: 'hi from alice' })
	assert.equal(first.enc, 'pkmsg')
	assert.equal(first.queued, false)
	const m = await upsertWithText('hi from alice')
	assert.equal(m.type, 'notify')
	assert.equal(m.key.remoteJid, '15557770001@s.whatsapp.net')
	assert.equal(m.key.remoteJidAlt, '88887770001@lid')
	assert.equal(m.key.addressingMode, 'pn')
	assert.equal(m.key.id, first.id)
	assert.equal(m.pushName, 'Alice')
	const sent = await wasim.waitEvent('message.incoming_sent', { id: first.id })
	assert.deepEqual(sent.data, { account: ACCOUNT.phone, from: ALICE.phone, id: first.id, enc: 'pkmsg', addressing: 'pn', offline: false })
	// Baileys answers with a receipt, which the simulator records.
	const receipt = await wasim.waitEvent('receipt', { account: ACCOUNT.phone, ids: [first.id] })
	assert.equal(receipt.data.to, '15557770001@s.whatsapp.net')
})

test('LID-addressed sender: key.remoteJid is the LID, remoteJidAlt the PN', async () => {
	const sent = await wasim.post('/messages/send', { from: BOB.lid, to: ACCOUNT.phone, text: 'hi from bob', addressing: 'lid' })
	const m = await upsertWithText('hi from bob')
	assert.equal(m.key.remoteJid, '88887770002@lid')
	assert.equal(m.key.remoteJidAlt, '15557770002@s.whatsapp.net')
	assert.equal(m.key.addressingMode, 'lid')
	assert.equal(m.key.id, sent.id)
})

test('explicit ids: the same id sent twice reaches Baileys twice', async () => {
	const id = '3EB0FEEDFACE00000001'
	const from = client.mark()
	assert.equal((await wasim.post('/messages/send', { from: ALICE.phone, to: ACCOUNT.phone, text: 'dup', id })).id, id)
	await wasim.post('/messages/send', { from: ALICE.phone, to: ACCOUNT.phone, text: 'dup', id })
	await client.waitFor('messages.upsert', m => m.key.id === id, { from })
	const second = await wasim.waitEvent('message.incoming_sent', { id }, (await wasim.waitEvent('message.incoming_sent', { id })).seq)
	assert.equal(second.data.id, id)
})

test('alt:false leaves sender_lid out; Baileys still decrypts', async () => {
	const carol = { phone: '15557770003', lid: '88887770003', name: 'Carol' }
	await wasim.post('/contacts', carol)
	await wasim.post('/messages/send', { from: carol.phone, to: ACCOUNT.phone, text: 'no alt', alt: false })
	const m = await upsertWithText('no alt')
	assert.equal(m.key.remoteJid, '15557770003@s.whatsapp.net')
	assert.ok(!m.key.remoteJidAlt, 'no alt attribute, so no remoteJidAlt')
})

test('Baileys sends to a PN jid and to a LID jid; the contact decrypts both and confirms delivery', async () => {
	await client.call('send', { jid: '15557770001@s.whatsapp.net', text: 'reply to alice' })
	const toAlice = await wasim.waitEvent('message.outgoing', { text: 'reply to alice' })
	assert.equal(toAlice.data.account, ACCOUNT.phone)
	assert.equal(toAlice.data.to, ALICE.phone)
	assert.equal(toAlice.data.stanza_to, '15557770001@s.whatsapp.net')
	assert.match(toAlice.data.enc, /^(pkmsg|msg)$/)
	assert.equal(toAlice.data.message.extendedTextMessage.text, 'reply to alice')

	const mark = client.mark()
	const key = /** @type {any} */ (await client.call('send', { jid: '88887770002@lid', text: 'reply to bob' }))
	const toBob = await wasim.waitEvent('message.outgoing', { text: 'reply to bob' })
	assert.equal(toBob.data.to, BOB.phone)
	assert.equal(toBob.data.stanza_to, '88887770002@lid')
	assert.equal(toBob.data.id, key.id)
	// The contact's delivery receipt becomes status DELIVERY_ACK (3): a messages.update, or, when Baileys
	// still buffers its own 'append' upsert of the sent message, folded into that upsert.
	await client.waitFor(
		['messages.update', 'messages.upsert'],
		(data, name) =>
			name === 'messages.update'
				? data.some((/** @type {any} */ u) => u.key.id === key.id && u.status >= 3)
				: data.key.id === key.id && data.status >= 3,
		{ from: mark }
	)

	// Once Baileys has answered, the contact's session is confirmed: its next message is a plain msg.
	const next = await wasim.post('/messages/send', { from: ALICE.phone, to: ACCOUNT.phone, text: 'alice again' })
	assert.equal(next.enc, 'msg')
	await upsertWithText('alice again')
})

test('a contact reads what the account sent: a read receipt from the jid it was sent to, status READ in Baileys', async () => {
	const mark = client.mark()
	const key = /** @type {any} */ (await client.call('send', { jid: '88887770002@lid', text: 'read me, bob' }))
	await wasim.waitEvent('message.outgoing', { text: 'read me, bob' })
	const { read } = await wasim.post('/contacts/read', { contact: BOB.phone, account: ACCOUNT.phone, ids: [key.id] })
	assert.deepEqual(read, [key.id])
	await client.waitFor(
		['messages.update', 'messages.upsert'],
		(data, name) =>
			name === 'messages.update'
				? data.some((/** @type {any} */ u) => u.key.id === key.id && u.status === 4)
				: data.key.id === key.id && data.status === 4,
		{ from: mark }
	)
	// Read once: asking again reads nothing more.
	assert.deepEqual((await wasim.post('/contacts/read', { contact: BOB.phone, account: ACCOUNT.phone, ids: [key.id] })).read, [])
	const bad = await wasim.request('POST', '/contacts/read', { contact: BOB.phone, account: ACCOUNT.phone, ids: 'x' })
	assert.equal(bad.status, 400)
})

test('chat states ("typing…") are recorded per chat, by phone number and by LID', async () => {
	const after = await wasim.lastSeq()
	await client.call('presence', { type: 'composing', jid: `${BOB.lid}@lid` })
	await client.call('presence', { type: 'paused', jid: `${BOB.lid}@lid` })
	await client.call('presence', { type: 'recording', jid: `${ALICE.phone}@s.whatsapp.net` })
	const composing = await wasim.waitEvent('chatstate', { state: 'composing', to: BOB.phone }, after)
	assert.deepEqual(composing.data, { account: ACCOUNT.phone, to: BOB.phone, stanza_to: `${BOB.lid}@lid`, state: 'composing', media: null })
	const paused = await wasim.waitEvent('chatstate', { state: 'paused' }, after)
	assert.ok(paused.seq > composing.seq, 'in the order Baileys sent them')
	assert.equal(paused.data.to, BOB.phone)
	// rc14 sends recording as composing with media="audio"
	const recording = await wasim.waitEvent('chatstate', { to: ALICE.phone }, after)
	assert.deepEqual([recording.data.state, recording.data.media, recording.data.stanza_to], ['composing', 'audio', `${ALICE.phone}@s.whatsapp.net`])
	const stats = await wasim.get('/stats')
	assert.ok(stats.stanzas['<chatstate><composing>'] >= 2)
})

test('read receipts for a contact\'s message are recorded with type read', async () => {
	const sent = await wasim.post('/messages/send', { from: ALICE.phone, to: ACCOUNT.phone, text: 'read me' })
	const m = await upsertWithText('read me')
	await wasim.waitEvent('message.receipted', { id: sent.id })
	const after = await wasim.lastSeq()
	await client.call('read', { keys: [m.key] })
	const read = await wasim.waitEvent('receipt', { type: 'read', ids: [sent.id] }, after)
	assert.equal(read.data.account, ACCOUNT.phone)
	assert.equal(read.data.to, `${ALICE.phone}@s.whatsapp.net`)
})

test('Baileys sending to someone who is not a contact is reported, never crashes', async () => {
	await client.call('send', { jid: '15551234567@s.whatsapp.net', text: 'to nobody' }).catch(() => null)
	const { connections } = await wasim.get('/connections')
	assert.ok(connections.some((/** @type {any} */ c) => c.account === ACCOUNT.phone && c.stage === 'open'))
})

test('lid-mapping notification makes Baileys emit lid-mapping.update and store it', async () => {
	const from = client.mark()
	await wasim.post('/lid-mapping', { to: ACCOUNT.phone, lid: '77776660001', pn: '15556660001@s.whatsapp.net' })
	const update = await client.waitFor('lid-mapping.update', () => true, { from })
	assert.deepEqual(update, { lid: '77776660001@lid', pn: '15556660001@s.whatsapp.net' })
	assert.equal(await client.call('lidForPn', { pn: '15556660001@s.whatsapp.net' }), '77776660001@lid')
	await wasim.waitEvent('lid_mapping.sent', { account: ACCOUNT.phone, lid: '77776660001' })
})

test('offline: 409 by default, queued with if_offline=queue and delivered as append at the next login', async () => {
	const seq = await wasim.lastSeq()
	await client.call('end')
	await wasim.waitEvent('connection.closed', { account: ACCOUNT.phone }, seq)
	const refused = await wasim.request('POST', '/messages/send', { from: BOB.phone, to: ACCOUNT.phone, text: 'while away' })
	assert.equal(refused.status, 409)
	assert.equal(refused.body.error.code, 'not_connected')

	const queued = await wasim.post('/messages/send', { from: BOB.phone, to: ACCOUNT.phone, text: 'while away', if_offline: 'queue' })
	assert.equal(queued.queued, true)
	const from = client.mark()
	await client.connectOpen(wasim.ready.ws_url)
	const m = await client.waitFor('messages.upsert', x => x.text === 'while away', { from })
	assert.equal(m.type, 'append')
	assert.equal(m.key.id, queued.id)
	const sent = await wasim.waitEvent('message.incoming_sent', { id: queued.id })
	assert.equal(sent.data.offline, true)
	await client.waitFor('connection.update', u => u.receivedPendingNotifications === true, { from })
})
