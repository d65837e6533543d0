// `Builder.postEvent` and `Builder.getEvents` in Node against the real Eventline server:
// every parameter, both calling forms, error objects, and retries that never double an
// event. The built ES module (dist/) is what is tested: it is what users get.

import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import { once } from 'node:events'

import { Builder } from '../dist/builder.mjs'
import { countFetches, startProxy, startServer } from './support.mjs'

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

// Fast retries for the tests; each test that needs other options sets them.
const fast = { retries: 3, retryBaseMs: 5, retryCapMs: 50, retryWindowMs: 10000, timeoutMs: 5000, sentAt: true }

const purchase = () => ({
  event_type: 'store_purchase',
  content: { store_id: 'appmachine', card_id: '09102017133515', order_number: '61017114657' },
})

/** Calls `call(onSuccess, onError)` and resolves with which callback fired, and with what. */
function callbacks(call) {
  return new Promise((resolve) => {
    const returned = call(
      (response) => resolve({ success: response, returned }),
      (error) => resolve({ error, returned }),
    )
  })
}

describe('against a server', () => {
  let server
  before(async () => {
    server = await startServer()
  })
  after(() => server.stop())

  test('postEvent: the seed call, callbacks and Promise', async () => {
    Builder.configure(fast)
    const url = server.url('/api/events/post')
    const { success, returned } = await callbacks((onSuccess, onError) =>
      Builder.postEvent(url, purchase(), onSuccess, onError),
    )
    assert.match(success.id, UUID_V7)
    assert.equal(success.event_type, 'store_purchase')
    assert.deepEqual(success.content, purchase().content)
    assert.equal(success.scope, 'app')
    assert.equal(success.contact_id, null)
    assert.deepEqual(await returned, success, 'the Promise resolves with the same body')

    const stored = await Builder.postEvent(server.url('/api/events'), {
      ...purchase(),
      contact_id: 'contact-1',
      scope: 'site',
      timestamp: 1700000000,
    })
    assert.equal(stored.contact_id, 'contact-1')
    assert.equal(stored.scope, 'site')
    // Seconds from the caller; the device clock is right here, so no correction shows.
    assert.ok(Math.abs(stored.timestamp - 1700000000000) < 5000, `${stored.timestamp}`)
  })

  test('postEvent keeps a given id, and a repeat answers the stored event', async () => {
    Builder.configure(fast)
    const event = { ...purchase(), id: '0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b', timestamp: 1700000000000 }
    const first = await Builder.postEvent(server.url('/api/events/post'), event)
    const again = await Builder.postEvent(server.url('/api/events/post'), event)
    assert.equal(first.id, event.id)
    assert.deepEqual(again, first)
    assert.equal((await server.allEvents()).filter((stored) => stored.id == event.id).length, 1)
  })

  test('postEvent does not change the caller’s object', async () => {
    Builder.configure(fast)
    const event = purchase()
    await Builder.postEvent(server.url('/api/events/post'), event)
    assert.deepEqual(event, purchase())
  })

  test('sent_at corrects a device clock an hour slow', async () => {
    Builder.configure(fast)
    const realNow = Date.now
    const skewMs = -3600 * 1000
    Date.now = () => realNow() + skewMs
    let stored
    try {
      stored = await Builder.postEvent(server.url('/api/events/post'), purchase())
    } finally {
      Date.now = realNow
    }
    assert.ok(Math.abs(stored.timestamp - stored.received_at) < 5000, 'filed at the server’s time')

    // Off: the SDK sends neither timestamp nor sent_at, and the server's clock decides.
    Builder.configure({ sentAt: false })
    const counter = countFetches()
    try {
      await Builder.postEvent(server.url('/api/events/post'), purchase())
    } finally {
      counter.restore()
    }
    const sent = JSON.parse(counter.calls[0].init.body)
    assert.equal(sent.sent_at, undefined)
    assert.equal(sent.timestamp, undefined)
    assert.match(sent.id, UUID_V7)
  })

  test('getEvents: every parameter, callbacks and Promise', async () => {
    // Exact event times: without sent_at there is no clock correction to shift them.
    Builder.configure({ ...fast, sentAt: false })
    const post = (event) => Builder.postEvent(server.url('/api/events/post'), { content: {}, ...event })
    // A window of its own, so the other tests' events do not show.
    const base = Date.UTC(2019, 0, 1)
    const contact = '123e4567-e89b-12d3-a456-426655440000'
    for (const [minutes, event_type, contact_id, scope] of [
      [0, 'new_order', contact, 'app'],
      [1, 'new_contact', contact, 'app'],
      [2, 'new_order', 'someone-else', 'app'],
      [3, 'store_purchase', contact, 'app'],
      [4, 'new_order', contact, 'site'],
      [5, 'new_order', null, 'site'],
    ]) {
      await post({ event_type, contact_id, scope, timestamp: base + minutes * 60000 })
    }
    const url = server.url('/api/events/get')
    const until = base + 60 * 60000
    const types = (page) => page.events.map((event) => `${event.event_type}@${(event.timestamp - base) / 60000}`)

    // The seed's call shape: callbacks, every filter.
    const { success, returned } = await callbacks((onSuccess, onError) =>
      Builder.getEvents(url, base, until, contact, 'app', 'new_order,new_contact', '0', 50, onSuccess, onError),
    )
    assert.deepEqual(types(success), ['new_order@0', 'new_contact@1'])
    assert.equal(success.next_offset, null)
    assert.deepEqual(await returned, success)

    // Empty strings mean "all"; since and until are half-open.
    let page = await Builder.getEvents(url, base, base + 5 * 60000, '', '', '', '', 50)
    assert.deepEqual(types(page), ['new_order@0', 'new_contact@1', 'new_order@2', 'store_purchase@3', 'new_order@4'])
    // Seconds, a Date and RFC 3339 mean the same instants.
    page = await Builder.getEvents(url, base / 1000 + 60, new Date(base + 3 * 60000), '', '', '', '', 50)
    assert.deepEqual(types(page), ['new_contact@1', 'new_order@2'])
    page = await Builder.getEvents(url, '2019-01-01T00:04:00Z', until, null, null, null, null, null)
    assert.deepEqual(types(page), ['new_order@4', 'new_order@5'])
    // Scope, contact, and a list of types with spaces or as an array.
    page = await Builder.getEvents(url, base, until, '', 'site', '', '', 50)
    assert.deepEqual(types(page), ['new_order@4', 'new_order@5'])
    page = await Builder.getEvents(url, base, until, contact, '', ' store_purchase , new_contact ', '', 50)
    assert.deepEqual(types(page), ['new_contact@1', 'store_purchase@3'])
    page = await Builder.getEvents(url, base, until, '', '', ['new_contact', 'store_purchase'], '', 50)
    assert.deepEqual(types(page), ['new_contact@1', 'store_purchase@3'])
    // A numeric offset skips; limit bounds; next_offset continues exactly.
    page = await Builder.getEvents(url, base, until, '', '', '', '2', 2)
    assert.deepEqual(types(page), ['new_order@2', 'store_purchase@3'])
    const walked = []
    let offset = '0'
    do {
      page = await Builder.getEvents(url, base, until, '', '', '', offset, 4)
      walked.push(...types(page))
      offset = page.next_offset
    } while (offset)
    assert.equal(walked.length, 6)
    // A URL that already has a query string keeps it.
    page = await Builder.getEvents(url + '?order=desc', base, until, '', 'site', '', '', 1)
    assert.deepEqual(types(page), ['new_order@5'])
    // The SPEC names go on the wire.
    const counter = countFetches()
    try {
      await Builder.getEvents(url, 1, 2, 'c', 'app', 'a,b', 'o', 3)
    } catch {
      // `o` is not a valid offset; only the URL matters here.
    } finally {
      counter.restore()
    }
    assert.equal(
      new URL(counter.calls[0].url).search,
      '?since=1&until=2&contact_id=c&scope=app&event_types=a%2Cb&offset=o&limit=3',
    )
  })

  test('queryEvents: content filters as a list and as a tree, callbacks and Promise', async () => {
    Builder.configure({ ...fast, sentAt: false })
    const base = Date.UTC(2019, 1, 1)
    for (const [minutes, content] of [
      [0, { store_id: 'appmachine', total: 10 }],
      [1, { store_id: 'appmachine', total: 120 }],
      [2, { store_id: 'other', total: 500, address: { city: 'Paris' } }],
      [3, { total: '120' }],
    ]) {
      await Builder.postEvent(server.url('/api/events/post'), { event_type: 'new_order', content, timestamp: base + minutes * 60000 })
    }
    const url = server.url('/api/events/query')
    const window = { since: new Date(base), until: base + 60 * 60000, eventTypes: 'new_order' }
    const minutes = (page) => page.events.map((event) => (event.timestamp - base) / 60000)

    const { success, returned } = await callbacks((onSuccess, onError) =>
      Builder.queryEvents(url, { ...window, where: [{ path: 'store_id', value: 'appmachine' }, { path: 'total', op: 'gte', value: 100 }] }, onSuccess, onError),
    )
    assert.deepEqual(minutes(success), [1])
    assert.deepEqual(await returned, success)
    // A tree; typed values: the string "120" is not the number 120.
    let page = await Builder.queryEvents(url, {
      ...window,
      order: 'desc',
      where: { or: [{ path: ['address', 'city'], value: 'Paris' }, { path: 'total', value: 120 }] },
    })
    assert.deepEqual(minutes(page), [2, 1])
    // Pages continue with next_offset.
    page = await Builder.queryEvents(url, { ...window, limit: 1, where: [{ path: 'total', op: 'exists', value: true }] })
    assert.deepEqual(minutes(page), [0])
    page = await Builder.queryEvents(url, { ...window, limit: 3, offset: page.next_offset, where: [{ path: 'total', op: 'exists', value: true }] })
    assert.deepEqual(minutes(page), [1, 2, 3])
    // A bad filter is an error naming it.
    await assert.rejects(Builder.queryEvents(url, { where: [{ path: 'total', op: 'between', value: 1 }] }), (error) => {
      assert.equal(error.status, 400)
      assert.equal(error.problem.parameter, 'where[0].op')
      return true
    })
  })

  test('errors: 400 with the field, not retried; callbacks and rejection', async () => {
    Builder.configure(fast)
    const counter = countFetches()
    let outcome
    try {
      outcome = await callbacks((onSuccess, onError) =>
        Builder.postEvent(server.url('/api/events/post'), { event_typ: 'x', content: {} }, onSuccess, onError),
      )
    } finally {
      counter.restore()
    }
    const { error, returned } = outcome
    assert.equal(error.name, 'EventlineError')
    assert.ok(error instanceof Error)
    assert.equal(error.status, 400)
    assert.equal(error.problem.code, 'unknown-field')
    assert.equal(error.problem.field, 'event_typ')
    assert.equal(error.message, error.problem.detail)
    assert.equal(await returned, undefined, 'with onError the Promise resolves')
    assert.equal(counter.calls.length, 1, 'a 400 is never retried')

    await assert.rejects(
      Builder.getEvents(server.url('/api/events/get'), 'yesterday', '', '', '', '', '', 50),
      (error) => error.status == 400 && error.problem.parameter == 'since',
    )
  })

  test('errors: 413 for a body over the limit', async () => {
    Builder.configure(fast)
    const big = { event_type: 'big', content: { blob: 'x'.repeat(200 * 1024) } }
    await assert.rejects(Builder.postEvent(server.url('/api/events/post'), big), (error) => {
      assert.equal(error.status, 413)
      assert.equal(error.problem.code, 'body-too-large')
      return true
    })
  })

  test('a retry after a lost answer reuses the id: the server holds one copy', async () => {
    Builder.configure(fast)
    // The first post reaches the server and is stored; its answer is lost on the way back.
    const proxy = await startProxy(server.origin, (request, body, count) => (count == 1 ? 'drop-answer' : 'forward'))
    try {
      const stored = await Builder.postEvent(proxy.origin + '/api/events/post', { ...purchase(), event_type: 'lost_answer' })
      assert.equal(proxy.seen.length, 2)
      const ids = proxy.seen.map((attempt) => JSON.parse(attempt.body).id)
      assert.equal(ids[0], ids[1], 'both attempts carry the same id')
      assert.equal(stored.id, ids[0])
      const copies = await server.allEvents('&event_types=lost_answer')
      assert.equal(copies.length, 1)
    } finally {
      await proxy.stop()
    }
  })
})

test('errors: 503 from a server whose disk is full, with Retry-After honoured; reads go on; the call succeeds once there is room', async () => {
  const server = await startServer([], { diskSize: '1m' })
  try {
    // Fill the disk with events that do not compress, in batches until one is refused,
    // then one at a time until a single event is.
    const noise = () => Array.from({ length: 8 }, () => crypto.randomUUID()).join('')
    let stored = 0
    for (let batch = 0, len = 100; ; batch++) {
      assert.ok(batch < 1000, 'a 1 MB disk was never full')
      const events = Array.from({ length: len }, () => ({ event_type: 'filler', content: { noise: noise() } }))
      const answer = await fetch(server.url('/api/events/batch'), {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(events),
      })
      await answer.arrayBuffer()
      if (answer.status === 503 && len === 1) break
      if (answer.status === 503) {
        len = 1
        continue
      }
      assert.equal(answer.status, 201)
      stored += events.length
    }

    const counter = countFetches()
    try {
      // One retry inside a window of 3 s: after the server's Retry-After (1 s), not before.
      Builder.configure({ ...fast, retries: 1, retryBaseMs: 1, retryWindowMs: 3000 })
      const started = Date.now()
      const event = { ...purchase(), id: crypto.randomUUID(), content: { noise: noise() } }
      const error = await Builder.postEvent(server.url('/api/events/post'), event).catch((error) => error)
      const elapsedMs = Date.now() - started
      assert.equal(error.status, 503)
      assert.equal(error.problem.code, 'storage-unavailable')
      assert.equal(counter.calls.filter((call) => call.init.body && JSON.parse(call.init.body).id == event.id).length, 2)
      assert.ok(elapsedMs >= 1000, `retried after ${elapsedMs} ms, before Retry-After`)
      // Reads keep working while writes cannot.
      const page = await Builder.getEvents(server.url('/api/events/get') + '?eventTypes=filler&limit=10')
      assert.equal(page.events.length, 10)
    } finally {
      counter.restore()
    }
    assert.ok(stored > 0)

    // Room again: the same call succeeds.
    server.growDisk('64m')
    Builder.configure({ ...fast, retries: 5, retryWindowMs: 10000 })
    const posted = await Builder.postEvent(server.url('/api/events/post'), purchase())
    assert.match(posted.id, UUID_V7)
  } finally {
    await server.stop()
  }
})

test('errors: 429 from a rate-limited server, retried after its Retry-After', async () => {
  // One post a second per write key, two at once: the third at once is refused.
  const writeKey = 'wk_sdk_rate_limit_0123456789'
  const server = await startServer(['--write-key', writeKey, '--key-rate-limit', '1'])
  try {
    const url = server.url('/api/events/post?key=' + writeKey)
    Builder.configure({ ...fast, retries: 0 })
    await Builder.postEvent(url, purchase())
    await Builder.postEvent(url, purchase())
    const refused = await Builder.postEvent(url, purchase()).catch((error) => error)
    assert.equal(refused.status, 429)
    assert.equal(refused.problem.code, 'rate-limited')

    const counter = countFetches()
    try {
      Builder.configure({ ...fast, retries: 1, retryBaseMs: 1, retryWindowMs: 5000 })
      const started = Date.now()
      const stored = await Builder.postEvent(url, purchase())
      const elapsedMs = Date.now() - started
      assert.match(stored.id, UUID_V7)
      assert.equal(counter.calls.length, 2)
      assert.ok(elapsedMs >= 1000, `retried after ${elapsedMs} ms, before Retry-After`)
    } finally {
      counter.restore()
    }
  } finally {
    await server.stop()
  }
})

/** A loopback port that refuses connections: bound, then closed. */
async function closedPort() {
  const probe = createServer()
  probe.listen(0, '127.0.0.1')
  await once(probe, 'listening')
  const port = probe.address().port
  probe.close()
  return port
}

test('network failures: status 0 after the bounded retries', async () => {
  const port = await closedPort()
  Builder.configure({ ...fast, retries: 2 })
  const counter = countFetches()
  const { error } = await callbacks((onSuccess, onError) =>
    Builder.postEvent(`http://127.0.0.1:${port}/api/events/post`, purchase(), onSuccess, onError),
  ).finally(counter.restore)
  assert.equal(error.status, 0)
  assert.equal(error.problem, null)
  assert.equal(counter.calls.length, 3)
  const ids = new Set(counter.calls.map((call) => JSON.parse(call.init.body).id))
  assert.equal(ids.size, 1, 'every attempt is the same event')
})

test('a server that never answers: each attempt times out, then status 0', async () => {
  const silent = createServer(() => {})
  silent.listen(0, '127.0.0.1')
  await once(silent, 'listening')
  try {
    Builder.configure({ ...fast, retries: 1, timeoutMs: 100 })
    const counter = countFetches()
    const error = await Builder.getEvents(`http://127.0.0.1:${silent.address().port}/api/events/get`)
      .catch((error) => error)
      .finally(counter.restore)
    assert.equal(error.status, 0)
    assert.equal(counter.calls.length, 2)
  } finally {
    silent.close()
  }
})

test('the retry window bounds the time spent', async () => {
  const port = await closedPort()
  // Many retries allowed, but backoffs of up to a second cannot fit in 50 ms.
  Builder.configure({ ...fast, retries: 100, retryBaseMs: 1000, retryCapMs: 1000, retryWindowMs: 50 })
  const counter = countFetches()
  const error = await Builder.postEvent(`http://127.0.0.1:${port}/x`, purchase())
    .catch((error) => error)
    .finally(counter.restore)
  assert.equal(error.status, 0)
  assert.ok(counter.calls.length < 100, `${counter.calls.length} attempts`)
})
