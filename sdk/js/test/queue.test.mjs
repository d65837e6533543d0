// Queued mode in Node (no localStorage, no beacon there: the queue lives in memory),
// against the real server. Its browser half is in browser.test.mjs.

import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'

import { Builder } from '../dist/builder.mjs'
import { countFetches, startProxy, startServer } from './support.mjs'

// Posting needs this key; reading stays open (no secret key, loopback).
const WRITE_KEY = 'wk_queue_tests_0123456789'
let server
before(async () => {
  server = await startServer(['--write-key', WRITE_KEY])
})
after(() => server.stop())

const queued = { queue: true, flushIntervalMs: 5, batchLenMax: 100, queueLenMax: 1000, retries: 3, retryBaseMs: 5, retryCapMs: 50 }
const order = (n, type = 'queued_order') => ({ event_type: type, content: { n } })

test('posts gather into one batch request, read back in posting order', async () => {
  Builder.configure(queued)
  // Many share a millisecond: their ids, made in order, keep them in order.
  const numbers = Array.from({ length: 50 }, (_, i) => i)
  const counter = countFetches()
  let answers
  try {
    answers = await Promise.all(numbers.map((n) => Builder.postEvent(server.url(`/api/events/post?key=${WRITE_KEY}`), order(n))))
  } finally {
    counter.restore()
  }
  assert.equal(counter.calls.length, 1)
  assert.equal(new URL(counter.calls[0].url).pathname + new URL(counter.calls[0].url).search, `/api/events/batch?key=${WRITE_KEY}`)
  assert.equal(answers[0].stored, 50)
  assert.equal(answers[0].ids.length, 50)
  const stored = await server.allEvents('&event_types=queued_order')
  assert.deepEqual(stored.map((event) => event.content.n), numbers)
})

test('a refused event fails alone, with its reason; the others are stored', async () => {
  Builder.configure(queued)
  const url = server.url(`/api/events?key=${WRITE_KEY}`)
  const outcomes = await Promise.allSettled([
    Builder.postEvent(url, order(1, 'mixed_batch')),
    Builder.postEvent(url, { event_type: 'mixed_batch', content: 'not an object' }),
    Builder.postEvent(url, order(3, 'mixed_batch')),
  ])
  assert.deepEqual(outcomes.map((outcome) => outcome.status), ['fulfilled', 'rejected', 'fulfilled'])
  const error = outcomes[1].reason
  assert.equal(error.status, 400)
  assert.equal(error.problem.field, 'content')
  assert.equal(error.problem.index, 1)
  const stored = await server.allEvents('&event_types=mixed_batch')
  assert.deepEqual(stored.map((event) => event.content.n), [1, 3])
})

test('a batch whose answer is lost is sent again and stored once', async () => {
  Builder.configure(queued)
  const proxy = await startProxy(server.origin, (request, body, count) => (count == 1 ? 'drop-answer' : 'forward'))
  try {
    await Promise.all([1, 2, 3].map((n) => Builder.postEvent(`${proxy.origin}/api/events/post?key=${WRITE_KEY}`, order(n, 'lost_batch'))))
    assert.equal(proxy.seen.length, 2)
    assert.equal(proxy.seen[0].body.length > 0, true)
    const ids = (attempt) => JSON.parse(attempt.body).map((event) => event.id)
    assert.deepEqual(ids(proxy.seen[0]), ids(proxy.seen[1]))
  } finally {
    await proxy.stop()
  }
  assert.equal((await server.allEvents('&event_types=lost_batch')).length, 3)
})

test('the queue is bounded', async () => {
  Builder.configure({ ...queued, queueLenMax: 2, flushIntervalMs: 60000 })
  const url = server.url(`/api/events/post?key=${WRITE_KEY}`)
  const first = [Builder.postEvent(url, order(1, 'bounded')), Builder.postEvent(url, order(2, 'bounded'))]
  await assert.rejects(Builder.postEvent(url, order(3, 'bounded')), (error) => {
    assert.equal(error.status, 0)
    assert.match(error.message, /queue is full/)
    return true
  })
  await Builder.flush()
  await Promise.all(first)
  assert.equal((await server.allEvents('&event_types=bounded')).length, 2)
})
