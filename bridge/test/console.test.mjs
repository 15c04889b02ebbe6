import { test } from 'node:test'
import assert from 'node:assert/strict'
import { consoleText, installConsoleRouting, redact } from '../dist/console.js'
import { memoryLogger } from './helpers.mjs'

const PRIV = Buffer.from('8f3a5c7e9b1d2f4a6c8e0b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f2a', 'hex')
/** shaped like libsignal's SessionEntry as printed by session_record.js */
const sessionEntry = () => ({
	registrationId: 251,
	currentRatchet: { ephemeralKeyPair: { pubKey: Buffer.concat([Buffer.from([5]), PRIV]), privKey: PRIV }, rootKey: PRIV, previousCounter: 0 },
	indexInfo: { baseKey: PRIV, closed: -1 }
})
const leaks = text => [PRIV.toString('base64'), PRIV.toString('hex'), PRIV.toString('hex').slice(0, 32), '<Buffer', '8f 3a 5c 7e', PRIV.subarray(0, 18).toString('base64')].filter(s => text.includes(s))

test('the libsignal "Closing session:" call keeps the text and drops the object', () => {
	const text = consoleText(['Closing session:', sessionEntry()])
	assert.equal(text, 'Closing session: [1 object dropped]')
})

test('installed routing logs console.* at debug under component console without key bytes, nothing on stdout', () => {
	const { logger, out, text } = memoryLogger('debug')
	let stdoutBytes = 0
	const realWrite = process.stdout.write
	process.stdout.write = function (...a) { stdoutBytes += String(a[0]).length; return true }
	const restore = installConsoleRouting(logger)
	try {
		console.info('Closing session:', sessionEntry())
		console.log('Closing open session in favor of incoming prekey bundle')
		console.error('Session error:', new Error('Bad MAC'), sessionEntry())
		console.warn(`key ${PRIV.toString('base64')} and ${PRIV.toString('hex')}`)
		console.debug('inspected: <Buffer 8f 3a 5c 7e 9b 1d 2f 4a 6c 8e 0b 2d 4f 6a 8c 0e 1b 3d 5f 7a>')
		process.stdout.write(`raw ${PRIV.toString('hex')}\n`)
	} finally {
		restore()
		process.stdout.write = realWrite
	}
	assert.equal(stdoutBytes, 0, 'nothing reached stdout')
	assert.equal(out.length, 6)
	const lines = out.map(l => JSON.parse(l))
	for (const l of lines) {
		assert.equal(l.level, 'debug')
		assert.equal(l.component, 'console')
	}
	assert.equal(lines[0].msg, 'Closing session: [1 object dropped]')
	assert.equal(lines[2].msg, 'Session error: Error: Bad MAC [1 object dropped]')
	assert.match(lines[3].msg, /^key \[redacted\] and \[redacted\]$/)
	assert.deepEqual(leaks(text()), [])
})

test('console output is not logged at all above debug', () => {
	const { logger, out } = memoryLogger('info')
	const restore = installConsoleRouting(logger)
	try {
		console.info('Closing session:', sessionEntry())
	} finally {
		restore()
	}
	assert.equal(out.length, 0)
})

test('redact replaces base64, hex and byte-list runs but keeps ordinary text and jids', () => {
	assert.equal(redact('jid 15557770001@s.whatsapp.net ok'), 'jid 15557770001@s.whatsapp.net ok')
	assert.equal(redact(`x ${PRIV.toString('base64')} y`), 'x [redacted] y')
	assert.equal(redact(`x ${PRIV.toString('base64url')} y`), 'x [redacted] y')
	assert.equal(redact(`x ${PRIV.toString('hex').toUpperCase()} y`), 'x [redacted] y')
	assert.equal(redact(`x ${[...PRIV].join(',')} y`), 'x [redacted] y')
	assert.equal(redact(`x ${[...PRIV.subarray(0, 20)].map(b => b.toString(16).padStart(2, '0')).join(':')} y`), 'x [redacted] y')
})

test('console text is capped', () => {
	const text = consoleText(['word '.repeat(2000)])
	assert.ok(text.length < 2100)
	assert.match(text, /\[truncated\]$/)
})
