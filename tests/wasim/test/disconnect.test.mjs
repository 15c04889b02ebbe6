// Forced disconnects surface in Baileys as lastDisconnect.error.output.statusCode; a second login for the
// same device replaces the first (440).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { Wasim, Client, pairByQr } from '../test-support/harness.mjs'

const ACCOUNT = { phone: '15550002222', lid: '99990002222', device: 2 }

/** @type {Wasim} */
let wasim
/** @type {Client} */
let client

before(async () => {
	wasim = await Wasim.start()
	;({ client } = await pairByQr(wasim, ACCOUNT))
})
after(async () => {
	await client?.close()
	await wasim.stop()
})

/**
 * Ask the simulator to disconnect the account and return the code Baileys reports.
 * @param {Record<string, unknown>} body
 */
async function forceDisconnect(body) {
	const from = client.mark()
	const res = await wasim.post('/disconnect', { account: ACCOUNT.phone, ...body })
	assert.equal(res.closed, 1)
	return (await client.waitFor('connection.update', u => u.connection === 'close', { from })).statusCode
}

for (const [body, expected] of /** @type {const} */ ([
	[{ code: 515 }, 515],
	[{ code: 503 }, 503],
	[{ code: 440 }, 440],
	[{ code: 500 }, 500],
	[{ mode: 'drop' }, 428]
])) {
	test(`disconnect ${JSON.stringify(body)} -> Baileys sees ${expected}, then logs in again`, async () => {
		assert.equal(await forceDisconnect(body), expected)
		await client.connectOpen(wasim.ready.ws_url)
	})
}

test('a second login for the same device replaces the first with 440 (login.conflict)', async () => {
	const second = new Client(wasim.ready.root_pub)
	try {
		await second.call('importAuth', { json: await client.call('exportAuth') })
		const from = client.mark()
		const seq = await wasim.lastSeq()
		await second.connectOpen(wasim.ready.ws_url)
		assert.equal((await client.waitFor('connection.update', u => u.connection === 'close', { from })).statusCode, 440)
		const conflict = await wasim.waitEvent('login.conflict', { account: ACCOUNT.phone }, seq)
		assert.notEqual(conflict.data.conn_id, conflict.data.replaced_conn_id)
	} finally {
		await second.close()
	}
	await client.connectOpen(wasim.ready.ws_url)
})

test('disconnect 401 removes the device: Baileys sees 401 and its next login fails with 401', async () => {
	assert.equal(await forceDisconnect({ code: 401 }), 401)
	const { accounts } = await wasim.get('/accounts')
	assert.equal(accounts.length, 0)
	const seq = await wasim.lastSeq()
	assert.equal(await client.connectExpectClose(wasim.ready.ws_url), 401)
	await wasim.waitEvent('login.failure', { phone: ACCOUNT.phone, reason: 401 }, seq)
})
