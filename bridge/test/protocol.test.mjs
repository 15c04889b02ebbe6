import { test } from 'node:test'
import assert from 'node:assert/strict'
import { validateParams, CONNECTOR_METHODS, RpcError, classify, checkEvent } from '../dist/protocol.js'

const key = { remoteJid: '15557770001@s.whatsapp.net', fromMe: false, id: '3EB0ABCDEF', remoteJidAlt: '88887770001@lid', addressingMode: 'pn' }

/** per method: params that must validate, and [params, field] pairs that must fail on that field */
const CASES = {
	ping: { good: [{}, { extra: 1 }], bad: [] },
	'session.list': { good: [{}], bad: [] },
	'session.start': {
		good: [
			{ session: 's1', creds: null },
			{ session: 'acct_1.x-y', creds: { noiseKey: {} }, config: { browser: ['Ubuntu', 'Chrome', '22.0'], version: [2, 3000, 1], connectTimeoutMs: 20000, keepAliveIntervalMs: 30000, defaultQueryTimeoutMs: 60000, qrTimeoutMs: 60000 } }
		],
		bad: [
			[{ creds: null }, 'session'],
			[{ session: '-bad', creds: null }, 'session'],
			[{ session: 'a'.repeat(65), creds: null }, 'session'],
			[{ session: 'has space', creds: null }, 'session'],
			[{ session: 's1' }, 'creds'],
			[{ session: 's1', creds: 'x' }, 'creds'],
			[{ session: 's1', creds: [] }, 'creds'],
			[{ session: 's1', creds: null, config: 5 }, 'config'],
			[{ session: 's1', creds: null, config: { browser: ['a', 'b'] } }, 'config.browser'],
			[{ session: 's1', creds: null, config: { version: [2, 'x', 1] } }, 'config.version'],
			[{ session: 's1', creds: null, config: { connectTimeoutMs: -1 } }, 'config.connectTimeoutMs'],
			[{ session: 's1', creds: null, config: { qrTimeoutMs: 1.5 } }, 'config.qrTimeoutMs']
		]
	},
	'session.stop': { good: [{ session: 's1' }], bad: [[{}, 'session'], [{ session: 5 }, 'session']] },
	'session.logout': { good: [{ session: 's1' }], bad: [[{}, 'session']] },
	'session.requestPairingCode': {
		good: [{ session: 's1', phone: '15550001111' }, { session: 's1', phone: '15550001111', code: 'ABCD1234' }],
		bad: [
			[{ phone: '15550001111' }, 'session'],
			[{ session: 's1' }, 'phone'],
			[{ session: 's1', phone: '+15550001111' }, 'phone'],
			[{ session: 's1', phone: '123456' }, 'phone'],
			[{ session: 's1', phone: '1234567890123456' }, 'phone'],
			[{ session: 's1', phone: '15550001111', code: 'ABC' }, 'code']
		]
	},
	'message.send': {
		good: [
			{ session: 's1', to: '15557770001@s.whatsapp.net', content: { text: 'hi' } },
			{ session: 's1', to: '88887770002@lid', content: { text: 'hi' }, options: { messageId: '3EB0X', quoted: { key } } },
			{ session: 's1', to: '1203630@g.us', content: { text: 'hi' }, options: { quoted: { key, message: { conversation: 'q' } } } }
		],
		bad: [
			[{ to: '1@s.whatsapp.net', content: {} }, 'session'],
			[{ session: 's1', content: { text: 'x' } }, 'to'],
			[{ session: 's1', to: '15557770001', content: { text: 'x' } }, 'to'],
			[{ session: 's1', to: '1@s.whatsapp.net' }, 'content'],
			[{ session: 's1', to: '1@s.whatsapp.net', content: 'hi' }, 'content'],
			[{ session: 's1', to: '1@s.whatsapp.net', content: {}, options: 1 }, 'options'],
			[{ session: 's1', to: '1@s.whatsapp.net', content: {}, options: { messageId: '' } }, 'options.messageId'],
			[{ session: 's1', to: '1@s.whatsapp.net', content: {}, options: { quoted: {} } }, 'options.quoted.key'],
			[{ session: 's1', to: '1@s.whatsapp.net', content: {}, options: { quoted: { key: { remoteJid: '1@s.whatsapp.net' } } } }, 'options.quoted.key.id'],
			[{ session: 's1', to: '1@s.whatsapp.net', content: {}, options: { quoted: { key, message: 'x' } } }, 'options.quoted.message']
		]
	},
	'presence.send': {
		good: [{ session: 's1', type: 'available' }, { session: 's1', type: 'composing', to: '1@s.whatsapp.net' }],
		bad: [[{ session: 's1' }, 'type'], [{ session: 's1', type: 'typing' }, 'type'], [{ session: 's1', type: 'paused', to: 'nojid' }, 'to']]
	},
	'read.send': {
		good: [{ session: 's1', keys: [key] }],
		bad: [[{ session: 's1' }, 'keys'], [{ session: 's1', keys: [] }, 'keys'], [{ session: 's1', keys: [key, { id: 'x' }] }, 'keys[1].remoteJid'], [{ session: 's1', keys: [{ ...key, fromMe: 'no' }] }, 'keys[0].fromMe']]
	},
	'receipts.release': {
		good: [{ session: 's1', ids: ['3EB0ABCDEF'] }, { session: 's1', ids: ['A', 'B'] }],
		bad: [[{ ids: ['A'] }, 'session'], [{ session: 's1' }, 'ids'], [{ session: 's1', ids: [] }, 'ids'], [{ session: 's1', ids: ['A', ''] }, 'ids'], [{ session: 's1', ids: [5] }, 'ids']]
	}
}

test('every connector method has validator cases', () => {
	assert.deepEqual([...CONNECTOR_METHODS].sort(), Object.keys(CASES).sort())
})

for (const [method, { good, bad }] of Object.entries(CASES)) {
	test(`${method}: good params validate`, () => {
		for (const p of good) assert.doesNotThrow(() => validateParams(method, p), JSON.stringify(p))
	})
	test(`${method}: bad params give invalid_params with data.field`, () => {
		for (const [p, field] of bad) {
			assert.throws(
				() => validateParams(method, p),
				e => e instanceof RpcError && e.code === 'invalid_params' && e.data?.field === field,
				`${JSON.stringify(p)} should fail on ${field}`
			)
		}
		assert.throws(() => validateParams(method, null), e => e.code === 'invalid_params' && e.data.field === 'params')
	})
}

test('validated params drop unknown fields and keep optional ones', () => {
	const p = validateParams('message.send', { session: 's1', to: '1@lid', content: { text: 'x' }, options: { messageId: 'M1', junk: 1 }, junk: 2 })
	assert.deepEqual(p, { session: 's1', to: '1@lid', content: { text: 'x' }, options: { messageId: 'M1' } })
})

test('classify tells the message shapes apart', () => {
	assert.equal(classify({ id: 'c-1', method: 'ping', params: {} }), 'request')
	assert.equal(classify({ id: 'c-1', result: null }), 'response')
	assert.equal(classify({ id: null, error: { code: 'parse_error', message: 'x' } }), 'response')
	assert.equal(classify({ event: 'x', session: null, data: {} }), 'event')
	assert.equal(classify({ id: 1, method: 'ping' }), undefined)
	assert.equal(classify({ id: 'c', error: 'x' }), undefined)
	assert.equal(classify('x'), undefined)
})

test('checkEvent knows the documented fields', () => {
	assert.equal(checkEvent('lid-mapping.update', 's1', { lid: '1@lid', pn: '2@s.whatsapp.net' }), undefined)
	assert.equal(checkEvent('lid-mapping.update', 's1', { lid: '1@lid' }), 'pn')
	assert.equal(checkEvent('connection.update', 's1', { connection: 'close' }), 'statusCode')
	assert.equal(checkEvent('connection.update', null, { connection: 'open' }), 'session')
	assert.equal(checkEvent('bridge.ready', null, { protocol: 1, bridge_version: 'x', baileys_version: 'y', node_version: 'v20', pid: 1 }), undefined)
	assert.equal(checkEvent('no.such', 's1', {}), 'event')
})
