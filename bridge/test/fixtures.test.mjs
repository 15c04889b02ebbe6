// Every golden fixture in tests/fixtures/bridge/ must be a valid protocol message of the kind its name says.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import {
	classify, checkEvent, validateParams, validateBridgeParams, validateBridgeResult,
	isConnectorMethod, BRIDGE_METHODS, ERROR_CODES
} from '../dist/protocol.js'

const DIR = fileURLToPath(new URL('../../tests/fixtures/bridge/', import.meta.url))
const files = readdirSync(DIR).filter(f => f.endsWith('.json')).sort()
const load = f => JSON.parse(readFileSync(DIR + f, 'utf8'))
const byName = Object.fromEntries(files.map(f => [f, load(f)]))

const REQUIRED = [
	'request.session.start', 'response.session.start', 'request.keys.get', 'response.keys.get', 'request.keys.set',
	'request.creds.save', 'request.message.get', 'request.message.send', 'response.message.send', 'error.invalid_params',
	'event.bridge.ready', 'event.connection.update.qr', 'event.connection.update.open', 'event.connection.update.close',
	'event.messages.upsert.pn', 'event.messages.upsert.lid', 'event.lid-mapping.update', 'event.messages.update'
]

test('the required fixtures exist', () => {
	for (const name of REQUIRED) assert.ok(files.includes(`${name}.json`), `${name}.json is missing`)
})

const requestOf = f => {
	// response.<method>.json answers the request.<method>.json with the same id
	const method = f.replace(/^response\./, '').replace(/\.json$/, '')
	return byName[`request.${method}.json`]
}

for (const f of files) {
	test(`fixture ${f}`, () => {
		const m = byName[f]
		const kind = f.split('.')[0]
		if (kind === 'request') {
			assert.equal(classify(m), 'request')
			assert.equal(f, `request.${m.method}.json`, 'file is named after its method')
			if (isConnectorMethod(m.method)) {
				assert.match(m.id, /^c-\d+$/)
				validateParams(m.method, m.params)
			} else {
				assert.ok(BRIDGE_METHODS.includes(m.method), `unknown method ${m.method}`)
				assert.match(m.id, /^b-\d+$/)
				validateBridgeParams(m.method, m.params)
			}
		} else if (kind === 'response') {
			assert.equal(classify(m), 'response')
			assert.ok('result' in m)
			const req = requestOf(f)
			assert.ok(req, 'a response fixture comes with its request fixture')
			assert.equal(m.id, req.id)
			if (BRIDGE_METHODS.includes(req.method)) validateBridgeResult(req.method, m.result)
		} else if (kind === 'error') {
			assert.equal(classify(m), 'response')
			assert.ok(ERROR_CODES.includes(m.error.code))
			assert.equal(f.split('.')[1], m.error.code)
			if (m.error.code === 'invalid_params') assert.equal(typeof m.error.data.field, 'string')
		} else if (kind === 'event') {
			assert.equal(classify(m), 'event')
			assert.ok(f.startsWith(`event.${m.event}.`), 'file is named after its event')
			assert.equal(checkEvent(m.event, m.session, m.data), undefined)
		} else assert.fail(`unknown fixture kind ${kind}`)
	})
}

test('message keys in fixtures keep the v7 addressing fields', () => {
	const pn = byName['event.messages.upsert.pn.json'].data.messages[0].key
	const lid = byName['event.messages.upsert.lid.json'].data.messages[0].key
	assert.equal(pn.addressingMode, 'pn')
	assert.match(pn.remoteJid, /@s\.whatsapp\.net$/)
	assert.match(pn.remoteJidAlt, /@lid$/)
	assert.equal(lid.addressingMode, 'lid')
	assert.match(lid.remoteJid, /@lid$/)
	assert.match(lid.remoteJidAlt, /@s\.whatsapp\.net$/)
})

test('fixtures carry no real key material', () => {
	for (const f of ['request.creds.save.json', 'request.keys.set.json', 'response.keys.get.json']) {
		const text = JSON.stringify(byName[f])
		for (const [, b64] of text.matchAll(/"([A-Za-z0-9+/]{40,}={0,2})"/g)) {
			assert.match(Buffer.from(b64, 'base64').toString('latin1'), /^(FAKE-KEY-\d{3}-NOT-A-REAL-KEY-)+/, `${f}: ${b64.slice(0, 16)}… is not an obvious fake`)
		}
	}
})
