// The SDK in a real browser: Debian's Chromium, headless, driven by playwright-core,
// against the real Eventline server. Every page is served from another origin than the
// server's, as on a customer's web site.

import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { execFileSync } from 'node:child_process'
import { createServer } from 'node:http'
import { once } from 'node:events'
import { chromium } from 'playwright-core'

import { eventlineBinary, launchChromium, startProxy, startServer } from './support.mjs'

const SEED_CONTACT = '123e4567-e89b-12d3-a456-426655440000'

let server
let pages
let browser

before(async () => {
  server = await startServer()
  pages = await startPageServer(server.origin)
  browser = await launchChromium(chromium)
})

after(async () => {
  await browser?.close()
  pages?.close()
  await server?.stop()
})

/** Serves test/pages/ on its own port: another origin than the Eventline server's. */
async function startPageServer(eventlineOrigin) {
  const http = createServer(async (request, response) => {
    const target = eventlineOrigin
    const name = new URL(request.url, 'http://page').pathname.slice(1)
    if (!/^[a-z-]+\.html$/.test(name)) {
      response.writeHead(404).end()
      return
    }
    try {
      const text = await readFile(new URL(`pages/${name}`, import.meta.url), 'utf8')
      response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
      response.end(text.replaceAll('EVENTLINE_ORIGIN', target).replaceAll('https://yourserver.com', target))
    } catch {
      response.writeHead(404).end()
    }
  })
  http.listen(0, '127.0.0.1')
  await once(http, 'listening')
  const origin = `http://127.0.0.1:${http.address().port}`
  return {
    origin,
    url: (name) => `${origin}/${name}`,
    close: () => http.close(),
    /** Points the pages at another Eventline server. */
    setEventline: (other) => (eventlineOrigin = other),
  }
}

/** Opens a page in a fresh context and collects what it logs to the console. */
async function open(name, context) {
  context = context || (await browser.newContext())
  const page = await context.newPage()
  const logged = []
  const waiters = []
  page.on('console', async (message) => {
    const values = await Promise.all(message.args().map((arg) => arg.jsonValue().catch(() => null)))
    logged.push(values[0])
    for (const waiter of waiters.splice(0)) waiter()
  })
  page.on('pageerror', (error) => {
    logged.push({ pageerror: error.message })
    for (const waiter of waiters.splice(0)) waiter()
  })
  /** Resolves with the first logged value matching `predicate`. */
  const nextLog = async (predicate) => {
    for (;;) {
      const found = logged.find(predicate)
      if (found) return found
      const failure = logged.find((value) => value && value.pageerror)
      if (failure) throw new Error(`the page failed: ${failure.pageerror}`)
      await new Promise((resolve) => waiters.push(resolve))
    }
  }
  await page.goto(pages.url(name))
  return { page, context, logged, nextLog }
}

test('the seed postEvent example posts and its onSuccess logs the stored event', async () => {
  const { context, nextLog } = await open('seed-post.html')
  try {
    const logged = await nextLog((value) => value && (value.id || value.status !== undefined))
    assert.equal(logged.event_type, 'store_purchase', JSON.stringify(logged))
    assert.deepEqual(logged.content, { store_id: 'appmachine', card_id: '09102017133515', order_number: '61017114657' })
    assert.equal(logged.scope, 'app')
    const stored = await server.allEvents('&event_types=store_purchase')
    assert.deepEqual(stored.filter((event) => event.id == logged.id), [logged])
  } finally {
    await context.close()
  }
})

test('the seed getEvents example reads the contact’s new orders and contacts', async () => {
  const post = (event) =>
    fetch(server.url('/api/events'), { method: 'POST', body: JSON.stringify({ content: {}, scope: 'app', ...event }) })
  const wanted = [
    { event_type: 'new_order', contact_id: SEED_CONTACT, timestamp: '2020-01-01T00:00:00Z' },
    { event_type: 'new_contact', contact_id: SEED_CONTACT, timestamp: '2021-01-01T00:00:00Z' },
  ]
  for (const event of [
    ...wanted,
    { event_type: 'new_order', contact_id: 'someone-else', timestamp: '2020-06-01T00:00:00Z' },
    { event_type: 'store_purchase', contact_id: SEED_CONTACT, timestamp: '2020-06-01T00:00:00Z' },
    { event_type: 'new_order', contact_id: SEED_CONTACT, scope: 'site', timestamp: '2020-06-01T00:00:00Z' },
    { event_type: 'new_order', contact_id: SEED_CONTACT, timestamp: '2016-01-01T00:00:00Z' },
  ]) {
    assert.equal((await post(event)).status, 201)
  }
  const { context, nextLog } = await open('seed-get.html')
  try {
    const logged = await nextLog((value) => value && (value.events || value.status !== undefined))
    assert.ok(logged.events, JSON.stringify(logged))
    assert.deepEqual(
      logged.events.map((event) => [event.event_type, event.contact_id, new Date(event.timestamp).toISOString()]),
      wanted.map((event) => [event.event_type, event.contact_id, new Date(event.timestamp).toISOString()]),
    )
    assert.equal(logged.next_offset, null)
  } finally {
    await context.close()
  }
})

test('as an ES module from the server, with Promises and readable error details', async () => {
  const { page, context } = await open('module.html')
  try {
    await page.waitForFunction(() => document.title == 'loaded')
    const outcome = await page.evaluate(async (origin) => {
      const Builder = window.moduleBuilder
      const stored = await Builder.postEvent(origin + '/api/events/post', { event_type: 'from_module', content: { a: 1 } })
      const refused = await Builder.postEvent(origin + '/api/events/post', { event_type: 'bad', content: [] }).catch(
        (error) => ({ name: error.name, status: error.status, code: error.problem && error.problem.code, field: error.problem && error.problem.field }),
      )
      return { stored, refused, sameDefault: window.sameDefault, globalBuilder: window.globalBuilder }
    }, server.origin)
    assert.equal(outcome.stored.event_type, 'from_module')
    assert.deepEqual(outcome.refused, { name: 'EventlineError', status: 400, code: 'invalid-field', field: 'content' })
    assert.equal(outcome.sameDefault, true)
    assert.equal(outcome.globalBuilder, 'undefined', 'the module defines no global')
  } finally {
    await context.close()
  }
})

test('offline, then online: the event is delivered once', async () => {
  const { page, context } = await open('app.html')
  try {
    await context.setOffline(true)
    const failed = page.waitForEvent('requestfailed')
    await page.evaluate(() => {
      Builder.configure({ retryBaseMs: 200, retryCapMs: 1000 })
      window.delivery = Builder.postEvent(eventlineOrigin + '/api/events/post', { event_type: 'offline_then_online', content: {} }).catch(
        (error) => ({ failed: error.status }),
      )
    })
    const attempt = await failed
    assert.match(attempt.failure().errorText, /INTERNET_DISCONNECTED/)
    await context.setOffline(false)
    const stored = await page.evaluate(() => window.delivery)
    assert.equal(stored.event_type, 'offline_then_online', JSON.stringify(stored))
    const copies = await server.allEvents('&event_types=offline_then_online')
    assert.deepEqual(copies.map((event) => event.id), [stored.id])
  } finally {
    await context.close()
  }
})

test('closing the page sends the queued events by beacon', async () => {
  // The proxy tells when the beacon arrived; it forwards to the real server.
  const proxy = await startProxy(server.origin)
  const { page, context } = await open('app.html')
  try {
    const ids = await page.evaluate(async (url) => {
      // A flush interval far longer than the test: only the beacon can send them.
      Builder.configure({ queue: true, flushIntervalMs: 3600000 })
      const events = [1, 2, 3].map((n) => ({ id: crypto.randomUUID(), event_type: 'beacon_on_close', content: { n } }))
      for (const event of events) Builder.postEvent(url, event)
      return events.map((event) => event.id)
    }, proxy.origin + '/api/events/post')
    assert.equal(proxy.seen.length, 0, 'nothing is sent before the page goes')
    const arrived = proxy.answered((request) => request.url == '/api/events/batch')
    await page.close({ runBeforeUnload: true })
    const beacon = await arrived
    assert.match(beacon.headers['content-type'], /^text\/plain/)
    assert.equal(beacon.status, 201)
    const stored = await server.allEvents('&event_types=beacon_on_close')
    assert.deepEqual(stored.map((event) => event.id).sort(), ids.sort())
  } finally {
    await context.close()
    await proxy.stop()
  }
})

test('queued events that could not be sent wait in localStorage for the next page', async () => {
  const { page, context } = await open('app.html')
  try {
    await context.setOffline(true)
    const ids = await page.evaluate(async () => {
      Builder.configure({ queue: true, flushIntervalMs: 0, retries: 0 })
      const events = [1, 2].map((n) => ({ id: crypto.randomUUID(), event_type: 'kept_in_storage', content: { n } }))
      for (const event of events) Builder.postEvent(eventlineOrigin + '/api/events/post', event)
      // Offline: the flush fails and keeps them.
      await Builder.flush()
      return events.map((event) => event.id)
    })
    const stored = () =>
      page.evaluate(() =>
        Object.keys(localStorage)
          .filter((key) => key.startsWith('eventline:queue:'))
          .flatMap((key) => JSON.parse(localStorage.getItem(key))),
      )
    assert.deepEqual((await stored()).map((item) => item.event.id), ids)
    // Leave the page while still offline: the beacon cannot get through either.
    await page.goto('about:blank')
    await context.setOffline(false)

    await page.goto(pages.url('app.html'))
    await page.evaluate(async () => {
      Builder.configure({ queue: true })
      await Builder.flush()
    })
    const delivered = await server.allEvents('&event_types=kept_in_storage')
    assert.deepEqual(delivered.map((event) => event.id).sort(), ids.sort())
    assert.deepEqual(await stored(), [], 'delivered events leave storage')
  } finally {
    await context.close()
  }
})

test('with keys: an allowed origin posts and reads its contact with a token; another origin cannot read', async () => {
  const tokenSecret = 'browser-test-token-secret-0123'
  const secretKey = 'sk_browser_test_0123456789'
  // Two page servers: one origin the Eventline server allows, one it does not.
  const allowedPages = await startPageServer('PENDING')
  const otherPages = await startPageServer('PENDING')
  const keyed = await startServer([
    '--secret-key', secretKey,
    '--token-secret', tokenSecret,
    '--cors-origin', allowedPages.origin,
  ])
  allowedPages.setEventline(keyed.origin)
  otherPages.setEventline(keyed.origin)
  const token = execFileSync(eventlineBinary(), ['token', '--contact', 'c-browser', '--ttl', '1h', '--token-secret', tokenSecret])
    .toString()
    .trim()
  const tryCalls = (page) =>
    page.evaluate(async (token) => {
      const outcome = (promise) =>
        promise.then(
          (body) => ({ ok: true, body }),
          (error) => ({ ok: false, status: error.status, code: error.problem && error.problem.code }),
        )
      const posted = await outcome(
        Builder.postEvent(eventlineOrigin + '/api/events/post', { event_type: 'from_page', content: {}, contact_id: 'c-browser' }),
      )
      const read = await outcome(Builder.getEvents(eventlineOrigin + '/api/events/get?key=' + token, '', '', 'c-browser', '', '', '', 10))
      const readOther = await outcome(Builder.getEvents(eventlineOrigin + '/api/events/get?key=' + token, '', '', 'someone-else', '', '', '', 10))
      return { posted, read, readOther }
    }, token)
  const context = await browser.newContext()
  try {
    const allowed = await context.newPage()
    await allowed.goto(allowedPages.url('app.html'))
    await allowed.evaluate(() => Builder.configure({ retries: 0 }))
    const fromAllowed = await tryCalls(allowed)
    assert.equal(fromAllowed.posted.ok, true, JSON.stringify(fromAllowed.posted))
    assert.equal(fromAllowed.read.ok, true, JSON.stringify(fromAllowed.read))
    assert.deepEqual(fromAllowed.read.body.events.map((event) => event.event_type), ['from_page'])
    // The token reads its own contact only.
    assert.deepEqual(fromAllowed.readOther, { ok: false, status: 403, code: 'forbidden' })

    const other = await context.newPage()
    await other.goto(otherPages.url('app.html'))
    await other.evaluate(() => Builder.configure({ retries: 0 }))
    const fromOther = await tryCalls(other)
    // Refused by the server (403 origin-not-allowed) without CORS headers: the page sees
    // no answer at all, and reads nothing.
    assert.equal(fromOther.posted.ok, false)
    assert.equal(fromOther.read.ok, false)
    assert.equal(fromOther.read.status, 0)
    const stored = await (await fetch(keyed.url('/api/events?contact_id=c-browser'), { headers: { authorization: `Bearer ${secretKey}` } })).json()
    assert.equal(stored.events.length, 1, 'only the allowed page stored an event')
  } finally {
    await context.close()
    allowedPages.close()
    otherPages.close()
    await keyed.stop()
  }
})
