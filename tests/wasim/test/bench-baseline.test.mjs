// bench/baseline.mjs (the bare-Baileys side of `make bench`) at a tiny size, so its CLI and JSON contract cannot rot.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Wasim } from '../test-support/harness.mjs'

const BASELINE = fileURLToPath(new URL('../bench/baseline.mjs', import.meta.url))
const TRUST_ROOT = fileURLToPath(new URL('../trust-root.mjs', import.meta.url))

/** @type {Wasim} */
let wasim
/** @type {string} */
let dir
before(async () => {
	wasim = await Wasim.start()
	dir = mkdtempSync(join(tmpdir(), 'wasim-baseline-test-'))
})
after(async () => {
	await wasim.stop()
	rmSync(dir, { recursive: true, force: true })
})

let runs = 0
/**
 * Run the baseline with these arguments; each run gets its own phone prefixes so runs never collide.
 * @param {string[]} args
 * @returns {Promise<{ code: number | null, stdout: string, stderr: string, result: any }>}
 */
async function baseline(args) {
	const n = ++runs
	const out = join(dir, `out-${n}.json`)
	const proc = spawn(
		process.execPath,
		['--expose-gc', '--import', TRUST_ROOT, BASELINE, '--control-url', wasim.ready.control_url, '--ws-url', wasim.ready.ws_url,
			'--phone-prefix', `17770${n}0`, '--contact-prefix', `17780${n}0`, '--out', out, ...args],
		{ env: { ...process.env, WA_SIM_ROOT_PUB: wasim.ready.root_pub }, stdio: ['ignore', 'pipe', 'pipe'] }
	)
	let stdout = ''
	let stderr = ''
	proc.stdout.on('data', d => (stdout += d))
	proc.stderr.on('data', d => (stderr += d))
	const code = await new Promise(resolve => proc.on('exit', resolve))
	const result = code === 0 ? JSON.parse(readFileSync(out, 'utf8')) : null
	return { code, stdout, stderr, result }
}

/** The fields every result carries. @param {any} r @param {Record<string, unknown>} expect */
function assertCommon(r, expect) {
	assert.equal(r.tool, 'baileys')
	assert.equal(r.baileys_version, '7.0.0-rc14')
	assert.equal(r.node, process.version)
	for (const [k, v] of Object.entries(expect)) assert.equal(r[k], v, k)
	assert.equal(typeof r.warmup, 'boolean')
	assert.ok(r.link_s > 0)
}

for (const store of ['memory', 'file']) {
	test(`throughput, ${store} store: every message arrives and is counted once`, async () => {
		const { code, stdout, stderr, result: r } = await baseline(['--mode', 'throughput', '--store', store, '--sessions', '2', '--messages', '20', '--contacts', '2'])
		assert.equal(code, 0, stderr)
		assert.equal(stderr, '')
		assert.match(stdout, /^baseline throughput store=\w+ sessions=2: .*\n$/)
		assertCommon(r, { mode: 'throughput', store, sessions: 2, contacts: 2, messages: 20, warmup: true, warmup_messages: 4, received: 20 })
		assert.ok(r.last_received_ms >= r.first_send_ms)
		assert.ok(r.keys_persisted_ms >= r.last_received_ms)
		for (const k of ['elapsed_s', 'msg_per_s', 'send_s', 'persisted_elapsed_s', 'persisted_msg_per_s', 'sim_send_s', 'sim_msg_per_s']) {
			assert.equal(typeof r[k], 'number', k)
		}
	})
}

test('latency: sequential echoes, percentiles from the simulator clock', async () => {
	const { code, stderr, result: r } = await baseline(['--mode', 'latency', '--store', 'memory', '--samples', '5'])
	assert.equal(code, 0, stderr)
	assertCommon(r, { mode: 'latency', store: 'memory', sessions: 1, contacts: 1, messages: 5, samples: 5, warmup: true })
	assert.equal(r.latencies_ms.length, 5)
	assert.ok(r.latencies_ms.every((/** @type {number} */ v) => Number.isInteger(v) && v >= 0))
	assert.ok(r.p50_ms <= r.p95_ms && r.p95_ms <= r.p99_ms && r.p99_ms <= r.max_ms)
})

test('idle: RSS before and after, per session', async () => {
	const { code, stderr, result: r } = await baseline(['--mode', 'idle', '--store', 'memory', '--sessions', '2', '--settle-s', '1'])
	assert.equal(code, 0, stderr)
	assertCommon(r, { mode: 'idle', store: 'memory', sessions: 2, warmup: false, gc: true, settle_s: 1 })
	assert.ok(r.rss_before_bytes > 0 && r.rss_after_bytes > 0)
	assert.equal(r.rss_per_session_bytes, Math.round((r.rss_after_bytes - r.rss_before_bytes) / 2))
	assert.equal(typeof r.heap_used_per_session_bytes, 'number')
})

test('boot: stored sessions reopen', async () => {
	const { code, stderr, result: r } = await baseline(['--mode', 'boot', '--sessions', '2', '--state-dir', join(dir, 'boot')])
	assert.equal(code, 0, stderr)
	assertCommon(r, { mode: 'boot', store: 'file', sessions: 2, warmup: false, stagger_s: 0 })
	assert.ok(r.boot_s > 0 && r.first_open_s <= r.boot_s)
})

test('bad usage and an unreachable simulator fail with one stderr line', async () => {
	const usage = await baseline(['--mode', 'nope'])
	assert.equal(usage.code, 2)
	assert.match(usage.stderr, /^baseline: usage error: --mode/)
	const proc = await new Promise(resolve => {
		const p = spawn(process.execPath, ['--import', TRUST_ROOT, BASELINE, '--control-url', 'http://127.0.0.1:9', '--ws-url', 'ws://127.0.0.1:9/ws/chat',
			'--mode', 'idle', '--sessions', '1', '--out', join(dir, 'never.json')], { env: { ...process.env, WA_SIM_ROOT_PUB: wasim.ready.root_pub }, stdio: ['ignore', 'pipe', 'pipe'] })
		let stderr = ''
		p.stderr.on('data', d => (stderr += d))
		p.on('exit', code => resolve({ code, stderr }))
	})
	assert.equal(/** @type {any} */ (proc).code, 1)
	assert.match(/** @type {any} */ (proc).stderr, /^baseline: error: /)
})
