// The built files: the size budget, and that each form loads (ES module, CommonJS,
// classic script).

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { gzipSync } from 'node:zlib'
import vm from 'node:vm'

const SIZE_BUDGET_GZIP_BYTES = 3 * 1024

test('the classic script is at most 3 KB minified and gzipped', async () => {
  const script = await readFile(new URL('../dist/builder.js', import.meta.url))
  const gzipped = gzipSync(script, { level: 9 }).length
  console.log(`dist/builder.js: ${script.length} bytes, ${gzipped} bytes gzipped`)
  assert.ok(gzipped <= SIZE_BUDGET_GZIP_BYTES, `${gzipped} bytes gzipped, over the ${SIZE_BUDGET_GZIP_BYTES} budget`)
})

test('every build exposes the same API', async () => {
  const api = ['configure', 'flush', 'getEvents', 'postEvent', 'queryEvents']
  const esm = await import('../dist/builder.mjs')
  assert.deepEqual(Object.keys(esm.Builder).sort(), api)
  assert.equal(esm.default, esm.Builder)

  const cjs = createRequire(import.meta.url)('../dist/builder.cjs')
  assert.deepEqual(Object.keys(cjs.Builder).sort(), api)

  // The classic script defines the global `Builder` and nothing else.
  const context = vm.createContext({ setTimeout, clearTimeout, Date, Math, Uint8Array })
  const before = new Set(Object.keys(context))
  vm.runInContext(await readFile(new URL('../dist/builder.js', import.meta.url), 'utf8'), context)
  const added = Object.keys(context).filter((key) => !before.has(key))
  assert.deepEqual(added, ['Builder'])
  assert.deepEqual(Object.keys(context.Builder).sort(), api)
})
