// Linking new devices (QR and pairing code) and logging in, against real Baileys rc14.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { Wasim, Client, pairByQr } from '../test-support/harness.mjs'

/** @type {Wasim} */
let wasim
before(async () => {
	wasim = await Wasim.start()
})
after(async () => {
	assert.equal(await wasim.stop(), 0)
	assert.deepEqual(wasim.extraStdout, [], 'stdout carries only the ready line')
})

test('ready line has ws_url, control_url and a 32-byte root_pub', () => {
	assert.match(wasim.ready.ws_url, /^ws:\/\/127\.0\.0\.1:\d+\/ws\/chat$/)
	assert.match(wasim.ready.control_url, /^http:\/\/127\.0\.0\.1:\d+$/)
	assert.match(wasim.ready.root_pub, /^[0-9a-f]{64}$/)
})

test('QR pairing: pair-success, valid device signature, 515, then login', async () => {
	const { client, account, closedWith } = await pairByQr(wasim, { phone: '15550001111', lid: '99990001111', device: 5, name: 'Relay One' })
	try {
		assert.equal(closedWith, 515)
		assert.deepEqual(account, {
			phone: '15550001111',
			lid: '99990001111',
			device: 5,
			jid: '15550001111:5@s.whatsapp.net',
			lid_jid: '99990001111:5@lid',
			connected: false,
			prekeys: 0
		})
		const signed = await wasim.waitEvent('pair.device_signed', { phone: '15550001111' })
		assert.equal(signed.data.valid, true)
		const success = await wasim.waitEvent('pair.success', { phone: '15550001111' })
		assert.equal(success.data.method, 'qr')
		await wasim.waitEvent('login.success', { account: '15550001111', device: 5 })
		const user = /** @type {any} */ (await client.call('user'))
		assert.equal(user.id, '15550001111:5@s.whatsapp.net')
		assert.equal(user.lid, '99990001111:5@lid')
		assert.equal((/** @type {any} */ (await client.call('me'))).name, 'Relay One')
		const { accounts } = await wasim.get('/accounts')
		const mine = accounts.find((/** @type {any} */ a) => a.phone === '15550001111')
		assert.equal(mine.connected, true)
		assert.ok(mine.prekeys > 100, 'Baileys uploaded its prekeys')
		const { connections } = await wasim.get('/connections')
		assert.ok(connections.some((/** @type {any} */ c) => c.account === '15550001111' && c.stage === 'open' && c.kind === 'login'))
		const stats = await wasim.get('/stats')
		assert.deepEqual(stats.unknown_iqs, {})
		assert.ok(stats.iqs['encrypt get <digest>'] >= 1)
	} finally {
		await client.close()
	}
})

test('pairing code: companion_hello, code typed on the phone, pair-success, login', async () => {
	const client = new Client(wasim.ready.root_pub)
	try {
		const from = client.mark()
		await client.call('connect', { url: wasim.ready.ws_url })
		await client.waitFor('connection.update', u => !!u.qr, { from })
		const code = /** @type {string} */ (await client.call('pairingCode', { phone: '15550003333' }))
		assert.match(code, /^[0-9A-Z]{8}$/)
		await wasim.waitEvent('pairing_code.hello', { phone: '15550003333' })

		const wrong = await wasim.request('POST', '/pairing-code/enter', { code: '12345678', phone: '15559999999', lid: '99990009999' })
		assert.equal(wrong.status, 409)
		assert.equal(wrong.body.error.code, 'not_connected')

		const { account } = await wasim.post('/pairing-code/enter', { code: `${code.slice(0, 4)}-${code.slice(4)}`, phone: '15550003333', lid: '99990003333', device: 9 })
		assert.equal(account.jid, '15550003333:9@s.whatsapp.net')
		assert.equal((await wasim.waitEvent('pair.success', { phone: '15550003333' })).data.method, 'code')
		assert.equal((await wasim.waitEvent('pair.device_signed', { phone: '15550003333' })).data.valid, true)
		await client.waitFor('connection.update', u => u.connection === 'close' && u.statusCode === 515, { from })
		await client.connectOpen(wasim.ready.ws_url)
		const user = /** @type {any} */ (await client.call('user'))
		assert.equal(user.id, '15550003333:9@s.whatsapp.net')
		assert.equal(user.lid, '99990003333:9@lid')
	} finally {
		await client.close()
	}
})

test('a device the server does not know gets <failure reason=401>', async () => {
	const { client } = await pairByQr(wasim, { phone: '15550004444', lid: '99990004444' })
	try {
		const auth = await client.call('exportAuth')
		await client.call('end')
		// Forget everything: the saved creds now belong to an unknown device.
		await wasim.post('/reset')
		const stranger = new Client(wasim.ready.root_pub)
		try {
			await stranger.call('importAuth', { json: auth })
			assert.equal(await stranger.connectExpectClose(wasim.ready.ws_url), 401)
			const failure = await wasim.waitEvent('login.failure', { phone: '15550004444' })
			assert.equal(failure.data.reason, 401)
		} finally {
			await stranger.close()
		}
	} finally {
		await client.close()
	}
})
