// Test support: starts the real Eventline binary on 127.0.0.1:0 with a temporary data
// directory, and small loopback helpers (a fault proxy, a small disk).

import { spawn, spawnSync } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { createServer, request as httpRequest } from 'node:http'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { EventEmitter, once } from 'node:events'

const repository = resolve(import.meta.dirname, '../../..')

/** The binary `cargo build -p eventline` makes; scripts/test builds it before this suite. */
export function eventlineBinary() {
  const binary = process.env.EVENTLINE_BIN || join(repository, 'target/debug/eventline')
  if (!existsSync(binary)) {
    throw new Error(`no Eventline binary at ${binary}: run \`cargo build -p eventline\` first (or set EVENTLINE_BIN)`)
  }
  return binary
}

/** Runs `mount` with `args`; the disk-full test mounts a tmpfs, which needs root. */
function mount(args) {
  const run = spawnSync('mount', args, { encoding: 'utf8' })
  if (run.status !== 0) {
    throw new Error(`mount ${args.join(' ')} failed (a tmpfs needs root, as CI runs): ${run.stderr || run.error}`)
  }
}

/**
 * Starts `eventline serve` and resolves once it prints its address. With `diskSize`
 * (`'1m'`), the data directory is a tmpfs of that size: a real disk that fills up, and
 * that `growDisk` makes room on.
 */
export async function startServer(args = [], { diskSize } = {}) {
  const dataDir = await mkdtemp(join(tmpdir(), 'eventline-sdk-'))
  if (diskSize) mount(['-t', 'tmpfs', '-o', `size=${diskSize}`, 'tmpfs', dataDir])
  const child = spawn(eventlineBinary(), ['serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn' },
  })
  // A failed test must not leave a server behind to keep the test process alive.
  process.once('exit', () => child.kill('SIGKILL'))
  let stderr = ''
  child.stderr.on('data', (chunk) => (stderr += chunk))
  const origin = await new Promise((resolvePromise, reject) => {
    let stdout = ''
    child.stdout.on('data', (chunk) => {
      stdout += chunk
      const match = /listening on (http:\/\/\S+)/.exec(stdout)
      if (match) resolvePromise(match[1])
    })
    child.once('exit', (code) => reject(new Error(`eventline exited with ${code} before listening:\n${stderr}`)))
  })
  return {
    origin,
    dataDir,
    url: (path) => origin + path,
    /** Every stored event, oldest first, read with the server's own paging. */
    async allEvents(query = '') {
      const events = []
      let offset = ''
      for (;;) {
        const response = await fetch(`${origin}/api/events?limit=1000&offset=${encodeURIComponent(offset)}${query}`)
        const page = await response.json()
        events.push(...page.events)
        if (!page.next_offset) return events
        offset = page.next_offset
      }
    },
    /** Grows the data directory's tmpfs to `size` (`'64m'`) under the running server. */
    growDisk(size) {
      mount(['-o', `remount,size=${size}`, dataDir])
    },
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM')
        await once(child, 'exit')
      }
      if (diskSize) spawnSync('umount', [dataDir])
      await rm(dataDir, { recursive: true, force: true })
    },
  }
}

/**
 * A loopback proxy in front of `target` that hands each request to `decide(request,
 * body)`: `'forward'` passes it on; `'drop-answer'` passes it on and then cuts the
 * connection instead of answering, as a network failure after the server acted would.
 */
export async function startProxy(target, decide = () => 'forward') {
  const seen = []
  const answered = new EventEmitter()
  const server = createServer(async (request, response) => {
    const chunks = []
    for await (const chunk of request) chunks.push(chunk)
    const body = Buffer.concat(chunks)
    const record = { method: request.method, url: request.url, headers: request.headers, body: body.toString() }
    seen.push(record)
    const action = decide(request, body, seen.length)
    const upstream = httpRequest(target + request.url, { method: request.method, headers: request.headers })
    upstream.end(body)
    const [answer] = await once(upstream, 'response')
    const answerChunks = []
    for await (const chunk of answer) answerChunks.push(chunk)
    if (action == 'drop-answer') {
      request.socket.destroy()
      return
    }
    response.writeHead(answer.statusCode, answer.headers)
    response.end(Buffer.concat(answerChunks))
    record.status = answer.statusCode
    answered.emit('answered', record)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    origin: `http://127.0.0.1:${server.address().port}`,
    seen,
    /** Resolves with the first request matching `predicate` once it has been answered. */
    answered(predicate) {
      const done = seen.find((record) => record.status && predicate(record))
      if (done) return Promise.resolve(done)
      return new Promise((resolve) => {
        const listener = (record) => {
          if (predicate(record)) {
            answered.off('answered', listener)
            resolve(record)
          }
        }
        answered.on('answered', listener)
      })
    },
    async stop() {
      server.closeAllConnections()
      server.close()
    },
  }
}

/** Counts the fetches the SDK makes, by wrapping the global `fetch`. */
export function countFetches() {
  const original = globalThis.fetch
  const counter = { calls: [], restore: () => (globalThis.fetch = original) }
  globalThis.fetch = (url, init) => {
    counter.calls.push({ url: String(url), init })
    return original(url, init)
  }
  return counter
}

/**
 * Debian's Chromium, headless, through the caller's playwright-core `chromium`. The flags
 * keep it off the network it has no business on (updates, sync), which this machine's
 * closed network would refuse.
 */
export function launchChromium(chromium) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  })
}
