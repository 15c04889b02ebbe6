import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { PATCHES, HOOK_MARKERS, patchSource } from '../dist/baileys-hooks.js'

const require = createRequire(import.meta.url)
const installed = file => require.resolve('baileys/package.json').replace(/\/package\.json$/, '').replace(/\/baileys$/, '') + file

for (const patch of PATCHES) {
	test(`the load hook rewrites ${patch.file} of the installed baileys, and refuses any other text`, async () => {
		const source = await readFile(installed(patch.file), 'utf8')
		const patched = patchSource(patch, source)
		for (const { original, replacement } of patch.rewrites) {
			assert.ok(patched.includes(replacement), replacement)
			if (!replacement.includes(original)) assert.ok(!patched.includes(original), original)
			assert.throws(() => patchSource(patch, source.replace(original, '')), /exactly once/)
			assert.throws(() => patchSource(patch, source + original), /exactly once/)
		}
		assert.ok(patched.endsWith(`globalThis.${patch.marker} = true;\n`))
	})
}

test('the bridge itself runs with every rewrite in place', async () => {
	// main.ts registers the hook before importing baileys and refuses to start without these markers
	await import('../dist/baileys-hooks.js')
	const { register } = await import('node:module')
	register('../dist/baileys-hooks.js', import.meta.url)
	await import('baileys')
	for (const m of HOOK_MARKERS) assert.equal(globalThis[m], true, m)
})
