// Eventline's JavaScript SDK: `Builder.postEvent` and `Builder.getEvents`, with the
// argument order of the Builder events documentation, each also returning a Promise;
// and `Builder.queryEvents`, the same read with content filters, as one JSON object.
//
// Delivery rules (README.md has the long form):
// - An event gets its id once, before the first attempt, so no retry can store it twice:
//   the server answers a repeated id with the event it already holds.
// - Only network failures, 408, 429 and 5xx are retried, with exponential backoff and
//   full jitter, never sooner than `Retry-After`, bounded in attempts and in time.
// - Posts go out as `text/plain`, a CORS-simple request: no preflight round trip.

const defaults = {
  // Attempts after the first one.
  retries: 5,
  retryBaseMs: 500,
  // The longest single wait between attempts.
  retryCapMs: 30000,
  // No attempt starts later than this after the first one.
  retryWindowMs: 60000,
  // One attempt is abandoned (and retried) after this long.
  timeoutMs: 10000,
  // Send the device clock, so the server can correct a skewed one (see README).
  sentAt: true,
  // Queued mode: batch posts, keep them in localStorage, send the rest by beacon when
  // the page goes away. Off by default, so each call behaves as documented.
  queue: false,
  batchUrl: '',
  flushIntervalMs: 1000,
  batchLenMax: 100,
  queueLenMax: 1000,
  storageKey: 'eventline:queue',
}

let options = { ...defaults }

// Queued mode's events, oldest first: `{ url, event }` where `event` already has its id.
let queue = []
// Events handed to `sendBeacon`: the browser sends them, but nothing confirms that they
// arrived. They stay in storage, and the next page sends them again: the server stores
// an id once, so a repeat costs a replayed answer, and a lost beacon costs nothing.
let unconfirmed = []
// Callbacks of the queued events posted by this page, by event id.
const waiting = new Map()
let flushTimer = null
// The flush under way, if any.
let flushing = null
let listening = false
// This page's own storage key: see `adopt`.
const tabId = uuid().slice(-12)
const tabKey = () => options.storageKey + ':' + tabId

const hasWindow = typeof addEventListener == 'function'
const storage = () => {
  try {
    return globalThis.localStorage
  } catch {
    // Access to storage can throw (a sandboxed frame, storage blocked by the user).
  }
}

// The last id made, and its millisecond.
let lastId
let lastIdMs = 0

/**
 * A UUIDv7: time-ordered, which keeps the server's id index compact. Ids made in the same
 * millisecond count up from the previous one, so that events posted in one millisecond
 * (which share a timestamp) read back in the order they were posted.
 */
function uuid() {
  const bytes = new Uint8Array(16)
  const crypto = globalThis.crypto
  if (crypto && crypto.getRandomValues) crypto.getRandomValues(bytes)
  else for (let i = 0; i < 16; i++) bytes[i] = (Math.random() * 256) | 0
  let ms = Date.now()
  if (lastId && ms <= lastIdMs) {
    // The same millisecond, or the clock stepped back: the previous id plus one.
    ms = lastIdMs
    bytes.set(lastId)
    for (let i = 15; i > 8; i--) {
      bytes[i] = (bytes[i] + 1) & 255
      if (bytes[i]) break
    }
  }
  lastIdMs = ms
  lastId = bytes
  for (let i = 5; i >= 0; i--, ms = Math.floor(ms / 256)) bytes[i] = ms % 256
  bytes[6] = 0x70 | (bytes[6] & 15)
  bytes[8] = 0x80 | (bytes[8] & 63)
  const hex = Array.from(bytes, (byte) => (byte + 256).toString(16).slice(1)).join('')
  return hex.replace(/^(.{8})(.{4})(.{4})(.{4})/, '$1-$2-$3-$4-')
}

function failure(status, problem, message) {
  const error = new Error(
    (problem && (problem.detail || problem.title)) || message || 'HTTP ' + status,
  )
  error.name = 'EventlineError'
  error.status = status
  error.problem = problem || null
  return error
}

const retryable = (status) => status == 0 || status == 408 || status == 429 || status >= 500

/** Waits `ms`, or less if the browser comes back online: then is the time to retry. */
function pause(ms) {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer)
      if (hasWindow) removeEventListener('online', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    if (hasWindow) addEventListener('online', done)
  })
}

/**
 * Sends a request until it is answered with a 2xx or a final error. `init` is called for
 * each attempt, so that `sent_at` is the clock of that attempt.
 */
async function request(url, init) {
  const started = Date.now()
  for (let attempt = 0; ; attempt++) {
    let error
    let waitMs = 0
    try {
      const response = await fetch(url, {
        ...init(),
        signal: AbortSignal.timeout && AbortSignal.timeout(options.timeoutMs),
      })
      const text = await response.text()
      let body = null
      try {
        body = text ? JSON.parse(text) : null
      } catch {
        // Not JSON: a proxy's error page. The status still tells what happened.
      }
      if (response.ok) return body
      error = failure(response.status, body && body.status ? body : null, response.statusText)
      waitMs = retryAfterMs(response.headers.get('retry-after'))
    } catch (cause) {
      // No answer: refused, reset, offline, or the attempt's timeout.
      error = failure(0, null, cause.message)
    }
    const backoffMs = Math.random() * Math.min(options.retryCapMs, options.retryBaseMs * 2 ** attempt)
    waitMs = Math.max(waitMs, backoffMs)
    if (
      !retryable(error.status) ||
      attempt >= options.retries ||
      Date.now() + waitMs - started > options.retryWindowMs
    ) {
      throw error
    }
    await pause(waitMs)
  }
}

/** `Retry-After` as seconds or an HTTP date, in milliseconds from now. */
function retryAfterMs(value) {
  if (!value) return 0
  const ms = /^\d+$/.test(value) ? value * 1000 : Date.parse(value) - Date.now()
  return ms > 0 ? ms : 0
}

/** Calls the seed-style callbacks and returns the Promise form of the same outcome. */
function settle(promise, onSuccess, onError) {
  return promise.then(
    (body) => {
      if (typeof onSuccess == 'function') onSuccess(body)
      return body
    },
    (error) => {
      // With an error callback the error is delivered there, and the Promise resolves,
      // so a fire-and-forget call leaves no unhandled rejection behind.
      if (typeof onError != 'function') throw error
      onError(error)
    },
  )
}

/** The event as sent at `now`. One request reads the clock once, so that the server's
 * correction moves all its events alike and keeps their order. */
const stamp = (event, now) => (options.sentAt ? { ...event, sent_at: now } : event)

const textPost = (body) => ({
  method: 'POST',
  headers: { 'content-type': 'text/plain;charset=UTF-8' },
  body,
  // Lets a post started just before the page goes away reach the server.
  keepalive: body.length < 60000,
})

/** Post one event. */
function postEvent(url, event, onSuccess, onError) {
  // The id and the event time are fixed here, once: every attempt sends the same event.
  const prepared = { ...event }
  if (prepared.id == null) prepared.id = uuid()
  if (prepared.timestamp == null && options.sentAt) prepared.timestamp = Date.now()
  const sent = options.queue
    ? enqueue(url, prepared)
    : request(url, () => textPost(JSON.stringify(stamp(prepared, Date.now()))))
  return settle(sent, onSuccess, onError)
}

/** Get a page of events. Empty strings, null and undefined mean "no filter". */
function getEvents(url, since, until, contactId, scope, eventTypes, offset, limit, onSuccess, onError) {
  const query = new URLSearchParams()
  const add = (name, value) => {
    if (value instanceof Date) value = value.getTime()
    if (Array.isArray(value)) value = value.join(',')
    if (value != null && value !== '') query.append(name, value)
  }
  add('since', since)
  add('until', until)
  add('contact_id', contactId)
  add('scope', scope)
  add('event_types', eventTypes)
  add('offset', offset)
  add('limit', limit)
  const search = query.toString()
  const target = search ? url + (url.includes('?') ? '&' : '?') + search : url
  return settle(request(target, () => ({ method: 'GET' })), onSuccess, onError)
}

/**
 * Query events with content filters: POSTs `query` as JSON to `url` (the server's
 * `/api/events/query`). `query` holds the read parameters of `getEvents` (`since`,
 * `until`, `contactId`, `scope`, `eventTypes`, `offset`, `limit`) and `order` and
 * `where`: a list of `{path, op, value}` that hold together, or a tree of `{and: [...]}`,
 * `{or: [...]}` and `{not: {...}}`. Pass the answer's `next_offset` as `offset` for the
 * next page.
 */
function queryEvents(url, query, onSuccess, onError) {
  const body = {}
  const add = (name, value) => {
    if (value instanceof Date) value = value.getTime()
    if (value != null && value !== '') body[name] = value
  }
  const read = query || {}
  add('since', read.since)
  add('until', read.until)
  add('contact_id', read.contactId)
  add('scope', read.scope)
  const types = read.eventTypes
  add('event_types', typeof types == 'string' ? types.split(',').filter((name) => name) : types)
  add('offset', read.offset)
  add('limit', read.limit)
  add('order', read.order)
  add('where', read.where)
  const text = JSON.stringify(body)
  // As a simple request (text/plain): a page on another origin sends it without a
  // preflight, as it does a post.
  const init = () => ({ method: 'POST', headers: { 'content-type': 'text/plain;charset=UTF-8' }, body: text })
  return settle(request(url, init), onSuccess, onError)
}

/** Changes options for the calls that follow; returns the options in force. */
function configure(changes) {
  options = { ...options, ...changes }
  if (options.queue) {
    adopt()
    if (hasWindow && !listening) {
      listening = true
      addEventListener('pagehide', beacon)
      addEventListener('visibilitychange', () => {
        if (typeof document == 'object' && document.visibilityState == 'hidden') beacon()
      })
    }
    schedule(0)
  }
  return { ...options }
}

// ---- Queued mode ----

/**
 * Takes over the events that earlier pages left in storage. Each page keeps its queue
 * under its own key, so two tabs never overwrite each other's events; an event that two
 * pages both send is stored once, since its id is fixed.
 */
function adopt() {
  const store = storage()
  if (!store) return
  const prefix = options.storageKey + ':'
  const ids = new Set(queue.map((item) => item.event.id))
  for (let i = store.length - 1; i >= 0; i--) {
    const key = store.key(i)
    if (!key || !key.startsWith(prefix) || key == tabKey()) continue
    try {
      for (const item of JSON.parse(store.getItem(key)) || []) {
        if (queue.length < options.queueLenMax && !ids.has(item.event.id)) {
          ids.add(item.event.id)
          queue.push(item)
        }
      }
    } catch {
      // A damaged entry cannot be read back; dropping it beats failing every page.
    }
    store.removeItem(key)
  }
  persist()
}

function persist() {
  const store = storage()
  if (!store) return
  try {
    const kept = queue.concat(unconfirmed)
    if (kept.length) store.setItem(tabKey(), JSON.stringify(kept))
    else store.removeItem(tabKey())
  } catch {
    // Storage is full or off: the events stay in memory and are still sent.
  }
}

function enqueue(url, event) {
  if (queue.length >= options.queueLenMax) {
    return Promise.reject(failure(0, null, 'the event queue is full (' + options.queueLenMax + ' events)'))
  }
  return new Promise((resolve, reject) => {
    waiting.set(event.id, { resolve, reject })
    queue.push({ url, event })
    persist()
    schedule(queue.length >= options.batchLenMax ? 0 : options.flushIntervalMs)
  })
}

function schedule(ms) {
  if (flushTimer == null && queue.length) {
    flushTimer = setTimeout(() => {
      flushTimer = null
      flush()
    }, ms)
  }
}

/** The batch endpoint beside a post URL: `…/api/events/post` → `…/api/events/batch`. */
function batchUrl(url) {
  if (options.batchUrl) return options.batchUrl
  const [path, search] = url.split('?')
  const base = path.replace(/\/post\/?$/, '').replace(/\/$/, '')
  return base + '/batch' + (search ? '?' + search : '')
}

/** Takes events out of the queue and settles their Promises: `outcome(id)` is
 * `['resolve', value]` or `['reject', error]`. */
function dequeue(items, outcome) {
  const ids = new Set(items.map((item) => item.event.id))
  queue = queue.filter((item) => !ids.has(item.event.id))
  persist()
  for (const id of ids) {
    const callbacks = waiting.get(id)
    waiting.delete(id)
    if (callbacks) {
      const [how, value] = outcome(id)
      callbacks[how](value)
    }
  }
}

/** Sends the queued events now, a batch per post URL. Resolves when the queue is empty,
 * or when the server cannot be reached (a later flush tries again). */
function flush() {
  clearTimeout(flushTimer)
  flushTimer = null
  flushing = flushing || drain().finally(() => (flushing = null))
  return flushing
}

async function drain() {
  while (queue.length) {
    const url = queue[0].url
    const items = queue.filter((item) => item.url == url).slice(0, options.batchLenMax)
    try {
      const answer = await request(batchUrl(url), () => {
        const now = Date.now()
        return textPost(JSON.stringify(items.map((item) => stamp(item.event, now))))
      })
      dequeue(items, () => ['resolve', answer])
    } catch (error) {
      if (retryable(error.status)) {
        // Kept, in storage too: the next flush, page or beacon sends them.
        schedule(options.retryCapMs)
        return
      }
      // A batch is refused whole: drop the events the server named, with their
      // reasons, and send the others again. With none named, all were refused.
      const reasons = new Map()
      for (const reason of (error.problem && error.problem.errors) || []) {
        const item = items[reason.index]
        if (item) reasons.set(item.event.id, failure(error.status, { ...error.problem, ...reason, errors: undefined }))
      }
      const refused = reasons.size ? items.filter((item) => reasons.has(item.event.id)) : items
      dequeue(refused, (id) => ['reject', reasons.get(id) || error])
    }
  }
}

/** On the way out: everything queued goes by `navigator.sendBeacon`, in bodies under 64 KB
 * (the browsers' limit for all beacons in flight). */
function beacon() {
  const send = typeof navigator == 'object' && navigator.sendBeacon && navigator.sendBeacon.bind(navigator)
  if (!send || !queue.length) return
  const encoder = new TextEncoder()
  const now = Date.now()
  const sent = []
  let chunk = []
  let bytes = 2
  const post = () => {
    if (chunk.length && send(batchUrl(chunk[0].url), JSON.stringify(chunk.map((item) => stamp(item.event, now))))) {
      sent.push(...chunk)
    }
    chunk = []
    bytes = 2
  }
  for (const item of queue) {
    const itemBytes = encoder.encode(JSON.stringify(stamp(item.event, now))).length + 1
    if (chunk.length && (bytes + itemBytes > 60000 || chunk[0].url != item.url)) post()
    chunk.push(item)
    bytes += itemBytes
  }
  post()
  // The browser sends an accepted beacon even after the page is gone. What it refused
  // stays queued; what it took is kept as unconfirmed (see `unconfirmed`). The Promises
  // resolve now, so that no caller waits forever on an outcome no one will report.
  unconfirmed = unconfirmed.concat(sent).slice(-options.queueLenMax)
  const ids = sent.map((item) => item.event.id)
  dequeue(sent, () => ['resolve', { beacon: true, ids }])
}

export const Builder = { postEvent, getEvents, queryEvents, configure, flush }
export default Builder
