// Builds dist/ with esbuild: the classic script (global `Builder`), the ES module and a
// CommonJS file for Node's `require`. `--check` builds in memory and fails if dist/ is
// not what the sources build to; the Eventline server compiles dist/ into its binary,
// so a stale dist/ would serve an old SDK.
import { readFile, writeFile, mkdir } from 'node:fs/promises'
import * as esbuild from 'esbuild'

const common = { bundle: true, minify: true, target: 'es2018', write: false, legalComments: 'none' }
const outputs = [
  { entryPoints: ['src/global.js'], format: 'iife', outfile: 'dist/builder.js' },
  { entryPoints: ['src/builder.js'], format: 'esm', outfile: 'dist/builder.mjs' },
  { entryPoints: ['src/builder.js'], format: 'cjs', outfile: 'dist/builder.cjs' },
]

const check = process.argv.includes('--check')
const stale = []
await mkdir('dist', { recursive: true })
for (const output of outputs) {
  const result = await esbuild.build({ ...common, ...output })
  const text = result.outputFiles[0].text
  if (check) {
    const committed = await readFile(output.outfile, 'utf8').catch(() => '')
    if (committed !== text) stale.push(output.outfile)
  } else {
    await writeFile(output.outfile, text)
    console.log(`${output.outfile}: ${Buffer.byteLength(text)} bytes`)
  }
}
if (stale.length) {
  console.error(`stale build: ${stale.join(', ')}; run \`npm run build\` in sdk/js and commit dist/`)
  process.exit(1)
}
