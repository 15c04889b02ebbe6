// The server's held messages in process, for what rc14 never sends on its own (positive message acks, retry
// receipts past the limit or for messages not held) and for their persistence in the state file.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm, readFile, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { BufferJSON } from 'baileys'
import { startSimulator } from '../src/server.mjs'
import { createAccount } from '../src/accounts.mjs'
import { Contact } from '../src/contacts.mjs'
import { handleReceipt, handleMessageAck } from '../src/messages.mjs'

const ACCOUNT = '15550006666'
const ALICE = { phone: '15557776001', lid: '88887776001', name: 'Alice' }

/** A simulator with one account and one contact, and a fake connection that records what it is sent. */
async function setUp(stateFile) {
	const sim = await startSimulator({ stateFile })
	if (!sim.state.accounts.has(ACCOUNT)) {
		sim.state.accounts.set(ACCOUNT, createAccount({ phone: ACCOUNT, lid: '99990006666', device: 1, companionIdentity: Buffer.alloc(32, 1) }))
		sim.state.addContact(Contact.create(ALICE, () => sim.state.changed()))
	}
	/** @type {import('baileys').BinaryNode[]} */
	const sent = []
	const conn = /** @type {any} */ ({ id: 'c-test', account: ACCOUNT, send: (/** @type {any} */ n) => sent.push(n), noteHandled() {} })
	return { sim, conn, sent }
}

/** @param {import('../src/server.mjs').Simulator} sim @param {string} id */
function hold(sim, id, extra = {}) {
	sim.state.hold(ACCOUNT, {
		id,
		from: ALICE.phone,
		addressing: 'pn',
		enc: 'msg',
		stanza: { tag: 'message', attrs: { id, from: `${ALICE.phone}@s.whatsapp.net` }, content: [{ tag: 'enc', attrs: { v: '2', type: 'msg' }, content: Buffer.from([1, 2, 3]) }] },
		text: 'hi',
		sentAt: Date.now(),
		deliveries: 1,
		retries: 0,
		...extra
	})
}

const heldIds = (/** @type {import('../src/server.mjs').Simulator} */ sim) => [...(sim.state.pending.get(ACCOUNT)?.values() ?? [])].map(m => m.id)
const typesOf = (/** @type {import('../src/server.mjs').Simulator} */ sim, /** @type {string} */ type) => sim.events.list({ type }).map(e => e.data)

test('a positive message ack settles a held message; a NACK does not', async () => {
	const { sim, conn } = await setUp()
	try {
		hold(sim, 'M1')
		hold(sim, 'M2')
		handleMessageAck(sim, conn, { tag: 'ack', attrs: { id: 'M1', to: `${ALICE.lid}@lid`, class: 'message', error: '487' } })
		assert.deepEqual(heldIds(sim), ['M1', 'M2'])
		handleMessageAck(sim, conn, { tag: 'ack', attrs: { id: 'M1', to: `${ALICE.lid}@lid`, class: 'message', type: 'text' } })
		assert.deepEqual(heldIds(sim), ['M2'])
		assert.deepEqual(typesOf(sim, 'message.receipted'), [{ account: ACCOUNT, from: ALICE.phone, id: 'M1', type: 'ack' }])
		assert.deepEqual(typesOf(sim, 'message.ack').map(a => a.error), ['487', null])
	} finally {
		await sim.close()
	}
})

test('one receipt settles every id in its list; receipts from or for others settle nothing', async () => {
	const { sim, conn } = await setUp()
	try {
		for (const id of ['R1', 'R2', 'R3', 'R4']) hold(sim, id)
		const list = { tag: 'list', attrs: {}, content: [{ tag: 'item', attrs: { id: 'R2' } }, { tag: 'item', attrs: { id: 'R4' } }] }
		await handleReceipt(sim, conn, { tag: 'receipt', attrs: { id: 'R1', to: `${ALICE.phone}@s.whatsapp.net`, type: 'read' }, content: [list] })
		assert.deepEqual(heldIds(sim), ['R3'])
		assert.deepEqual(typesOf(sim, 'message.receipted').map(r => [r.id, r.type]), [['R1', 'read'], ['R2', 'read'], ['R4', 'read']])
		await handleReceipt(sim, conn, { tag: 'receipt', attrs: { id: 'R3', to: '15550009999@s.whatsapp.net' } })
		await handleReceipt(sim, { ...conn, account: '15550009999' }, { tag: 'receipt', attrs: { id: 'R3', to: `${ALICE.phone}@s.whatsapp.net` } })
		assert.deepEqual(heldIds(sim), ['R3'])
		// Sending the same id again replaces the held copy and moves it last.
		hold(sim, 'R5')
		hold(sim, 'R3', { text: 'again' })
		assert.deepEqual(heldIds(sim), ['R5', 'R3'])
	} finally {
		await sim.close()
	}
})

test('retry receipts past the limit of 5, or for a message not held, are refused', async () => {
	const { sim, conn, sent } = await setUp()
	try {
		hold(sim, 'X1')
		hold(sim, 'X2', { retries: 5 })
		const retry = (/** @type {string} */ id, /** @type {number} */ count) =>
			handleReceipt(sim, conn, {
				tag: 'receipt',
				attrs: { id, to: `${ALICE.phone}@s.whatsapp.net`, type: 'retry' },
				content: [{ tag: 'retry', attrs: { count: String(count), id, v: '1' } }]
			})
		await retry('X1', 6)
		await retry('X2', 1)
		await retry('NOPE', 1)
		// X1 with count 1 is answered, but this account never uploaded a bundle to start a session from.
		await retry('X1', 1)
		assert.deepEqual(typesOf(sim, 'message.retry_refused'), [
			{ account: ACCOUNT, from: ALICE.phone, id: 'X1', count: 6, reason: 'limit' },
			{ account: ACCOUNT, from: ALICE.phone, id: 'X2', count: 1, reason: 'limit' },
			{ account: ACCOUNT, from: ALICE.phone, id: 'NOPE', count: 1, reason: 'not_held' },
			{ account: ACCOUNT, from: ALICE.phone, id: 'X1', count: 1, reason: 'error', error: `account ${ACCOUNT} has not uploaded a prekey bundle` }
		])
		assert.deepEqual(typesOf(sim, 'message.retry_resent'), [])
		// Only the server's acks of the receipts went out, no message; a retry receipt never settles.
		assert.deepEqual(sent.map(n => n.tag), ['ack', 'ack', 'ack', 'ack'])
		assert.deepEqual(heldIds(sim), ['X1', 'X2'])
	} finally {
		await sim.close()
	}
})

test('held messages survive a simulator restart with --state, and files with the old "offline" queue load', async () => {
	const dir = await mkdtemp(join(tmpdir(), 'wasim-held-'))
	const file = join(dir, 'state.json')
	try {
		let { sim } = await setUp(file)
		hold(sim, 'P1')
		hold(sim, 'P2', { deliveries: 0 })
		await sim.close()
		;({ sim } = await setUp(file))
		assert.deepEqual(heldIds(sim), ['P1', 'P2'])
		const p1 = sim.state.held(ACCOUNT, ALICE.phone, 'P1')
		assert.deepEqual(p1?.stanza.content, [{ tag: 'enc', attrs: { v: '2', type: 'msg' }, content: Buffer.from([1, 2, 3]) }])
		assert.equal(p1?.deliveries, 1)
		await sim.close()

		// A file written before messages were held after delivery: { offline: [[phone, [queued…]]] }.
		const json = JSON.parse(await readFile(file, 'utf8'), BufferJSON.reviver)
		json.offline = json.pending.map((/** @type {any} */ [phone, list]) => [phone, list.map((/** @type {any} */ m) => ({ id: m.id, from: m.from, addressing: m.addressing, enc: m.enc, stanza: m.stanza }))])
		delete json.pending
		await writeFile(file, JSON.stringify(json, BufferJSON.replacer))
		;({ sim } = await setUp(file))
		assert.deepEqual(heldIds(sim), ['P1', 'P2'])
		assert.equal(sim.state.held(ACCOUNT, ALICE.phone, 'P2')?.deliveries, 0)
		await sim.close()
	} finally {
		await rm(dir, { recursive: true, force: true })
	}
})
