import { test } from 'node:test'
import assert from 'node:assert/strict'
import { proto } from 'baileys'
import { serializeMessage, serializeKey, reduceConnectionUpdate, translateEvent, toWire } from '../dist/events.js'

const lidKey = () => ({ remoteJid: '88887770002@lid', remoteJidAlt: '15557770002@s.whatsapp.net', fromMe: false, id: '3EB0FA3AFE9955776669', participant: '', addressingMode: 'lid' })

test('a protobuf WAMessage keeps remoteJidAlt/addressingMode on its key (protobuf toJSON drops them)', () => {
	const msg = proto.WebMessageInfo.fromObject({ key: lidKey(), messageTimestamp: 1700000000, message: { conversation: 'hi' }, status: 2 })
	// what Baileys does: extra v7 fields live on the key object only
	Object.assign(msg.key, { remoteJidAlt: '15557770002@s.whatsapp.net', addressingMode: 'lid', participantAlt: undefined })
	assert.equal(JSON.parse(JSON.stringify(msg)).key.remoteJidAlt, undefined, 'precondition: toJSON drops it')
	const json = serializeMessage(msg)
	assert.equal(json.key.remoteJid, '88887770002@lid')
	assert.equal(json.key.remoteJidAlt, '15557770002@s.whatsapp.net')
	assert.equal(json.key.addressingMode, 'lid')
	assert.equal('participantAlt' in json.key, false, 'undefined fields are left out')
	assert.equal(json.messageTimestamp, '1700000000', '64-bit numbers inside protobuf objects are strings')
	assert.equal(json.status, 2, 'enums are numbers')
	assert.deepEqual(json.message, { conversation: 'hi' })
})

test('a plain-object WAMessage (as Baileys emits live messages) keeps its key fields and extra properties', () => {
	const msg = { key: { ...lidKey(), participantAlt: '1@s.whatsapp.net' }, messageTimestamp: 1795646452, pushName: 'Bob', broadcast: false, message: { conversation: 'hi from bob (lid)' }, category: 'peer' }
	const json = serializeMessage(msg)
	assert.deepEqual(json.key, { ...lidKey(), participantAlt: '1@s.whatsapp.net' })
	assert.equal(json.messageTimestamp, 1795646452)
	assert.equal(json.category, 'peer')
})

test('bytes become base64: strings inside protobuf objects, BufferJSON outside', () => {
	const msg = proto.WebMessageInfo.fromObject({ key: lidKey(), message: { messageContextInfo: { messageSecret: Buffer.from([1, 2, 3]) } } })
	assert.equal(serializeMessage(msg).message.messageContextInfo.messageSecret, 'AQID')
	assert.deepEqual(toWire({ raw: Buffer.from([1, 2, 3]) }), { raw: { type: 'Buffer', data: 'AQID' } })
})

test('serializeKey copies a plain key and drops null/undefined', () => {
	assert.deepEqual(serializeKey({ remoteJid: 'a@lid', id: 'X', fromMe: true, participant: null, remoteJidAlt: undefined }), { remoteJid: 'a@lid', id: 'X', fromMe: true })
	assert.deepEqual(serializeKey(undefined), {})
})

test('connection.update is reduced with statusCode and reason from lastDisconnect', () => {
	const close = reduceConnectionUpdate({ connection: 'close', lastDisconnect: { error: Object.assign(new Error('Stream Errored (restart required)'), { output: { statusCode: 515 } }), date: new Date() } })
	assert.deepEqual(close, { connection: 'close', statusCode: 515, reason: 'Stream Errored (restart required)', requested: false })
	assert.deepEqual(reduceConnectionUpdate({ connection: 'close', lastDisconnect: { error: undefined, date: new Date() } }, { requested: true }), { connection: 'close', statusCode: null, requested: true })
	assert.deepEqual(reduceConnectionUpdate({ qr: 'Q' }), { qr: 'Q' })
	assert.deepEqual(reduceConnectionUpdate({ connection: 'open' }, { me: { id: '1:5@s.whatsapp.net', lid: '9:5@lid', name: null } }), { connection: 'open', me: { id: '1:5@s.whatsapp.net', lid: '9:5@lid', name: null } })
	assert.deepEqual(reduceConnectionUpdate({ receivedPendingNotifications: true, isNewLogin: true, isOnline: false }), { receivedPendingNotifications: true, isNewLogin: true, isOnline: false })
})

test('Baileys events translate to the documented payloads', () => {
	assert.deepEqual(translateEvent('lid-mapping.update', { pn: '1@s.whatsapp.net', lid: '9@lid' }), { event: 'lid-mapping.update', data: { lid: '9@lid', pn: '1@s.whatsapp.net' } })
	const up = translateEvent('messages.update', [{ key: lidKey(), update: { status: 3 } }])
	assert.deepEqual(up, { event: 'messages.update', data: { updates: [{ key: lidKey(), update: { status: 3 } }] } })
	const upsert = translateEvent('messages.upsert', { type: 'append', messages: [{ key: lidKey(), message: { conversation: 'x' } }], requestId: 'r' })
	assert.equal(upsert.data.type, 'append')
	assert.equal(upsert.data.messages[0].key.addressingMode, 'lid')
	assert.deepEqual(translateEvent('messages.delete', { jid: 'a@lid', all: true }).data, { jid: 'a@lid', all: true })
	assert.deepEqual(translateEvent('messages.delete', { keys: [lidKey()] }).data, { keys: [lidKey()] })
	assert.deepEqual(translateEvent('contacts.upsert', [{ id: '1@s.whatsapp.net', lid: '9@lid', phoneNumber: '1@s.whatsapp.net' }]).data, { contacts: [{ id: '1@s.whatsapp.net', lid: '9@lid', phoneNumber: '1@s.whatsapp.net' }] })
	const hist = translateEvent('messaging-history.set', { chats: [{}, {}], contacts: [], messages: [{}], isLatest: true, progress: 50, syncType: 2, lidPnMappings: [{ lid: '9@lid', pn: '1@s.whatsapp.net' }] })
	assert.deepEqual(hist.data, { syncType: 2, progress: 50, isLatest: true, chats: 2, contacts: 0, messages: 1, lidPnMappings: [{ lid: '9@lid', pn: '1@s.whatsapp.net' }] })
	assert.equal(translateEvent('chats.upsert', []), undefined, 'not part of the protocol')
	assert.equal(translateEvent('creds.update', {}), undefined)
})
