// --state FILE: the simulator restarts on the same file and the same creds log in again; the contacts'
// Signal sessions survive too.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Wasim, pairByQr } from '../test-support/harness.mjs'

test('state file round trip across a simulator restart', async () => {
	const dir = await mkdtemp(join(tmpdir(), 'wasim-state-'))
	const file = join(dir, 'state.json')
	let wasim = await Wasim.start(['--state', file])
	/** @type {import('../test-support/harness.mjs').Client | undefined} */
	let client
	try {
		;({ client } = await pairByQr(wasim, { phone: '15550005555', lid: '99990005555', device: 4 }))
		await wasim.post('/contacts', { phone: '15557770005', lid: '88887770005', name: 'Eve' })
		await wasim.post('/messages/send', { from: '15557770005', to: '15550005555', text: 'before restart' })
		await client.waitFor('messages.upsert', m => m.text === 'before restart')
		await client.call('end')
		const rootPub = wasim.ready.root_pub
		assert.equal(await wasim.stop(), 0, 'SIGTERM exits cleanly')

		const saved = await readFile(file, 'utf8')
		assert.ok(saved.includes('15550005555') && saved.includes('88887770005'))

		wasim = await Wasim.start(['--state', file])
		assert.equal(wasim.ready.root_pub, rootPub, 'same root key, so the client still trusts it')
		const { accounts } = await wasim.get('/accounts')
		assert.equal(accounts.length, 1)
		assert.ok(accounts[0].prekeys > 0)
		assert.equal((await wasim.get('/contacts')).contacts[0].name, 'Eve')

		await client.connectOpen(wasim.ready.ws_url)
		const from = client.mark()
		// The contact's session survived: this is a continuation of it, not a new pkmsg session.
		await wasim.post('/messages/send', { from: '15557770005', to: '15550005555', text: 'after restart' })
		await client.waitFor('messages.upsert', m => m.text === 'after restart', { from })
	} finally {
		await client?.close()
		await wasim.stop()
		await rm(dir, { recursive: true, force: true })
	}
})
