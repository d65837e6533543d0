// Compiled by `tsc` (never run): the declarations accept the seed's calls as written and
// refuse misuse.
import Builder, { Builder as Named, type EventlineError, type EventsPage, type StoredEvent } from '../index.js'

const url = 'https://yourserver.com/api/events/post'
const event = {
  event_type: 'store_purchase',
  content: { store_id: 'appmachine', card_id: '09102017133515', order_number: '61017114657' },
}
const log = (response: unknown) => console.log(response)

// The seed's calls, callbacks and all.
Builder.postEvent(url, event, log, log)
Builder.getEvents(url, new Date(2017, 6, 6).getTime(), new Date().getTime(), '', 'app', 'new_order,new_contact', '0', 50, log, log)

// Content filters: a list, or a tree.
async function queries(): Promise<void> {
  const page: EventsPage = await Builder.queryEvents('/api/events/query', {
    since: new Date(2017, 6, 6),
    eventTypes: ['store_purchase'],
    where: [{ path: 'store_id', value: 'appmachine' }, { path: ['order', 'total'], op: 'gte', value: 100 }],
  })
  await Builder.queryEvents('/api/events/query', { where: { or: [{ not: { path: 'a', op: 'exists', value: true } }] } })
  // @ts-expect-error an operator the server does not know
  await Builder.queryEvents('/api/events/query', { where: [{ path: 'a', op: 'between', value: 1 }] })
  void page
}
void queries

// The Promise forms.
async function promises(): Promise<void> {
  const answer = await Named.postEvent(url, { ...event, contact_id: null, scope: 'site', timestamp: '2026-01-01T00:00:00Z' })
  if ('event_type' in answer) {
    const stored: StoredEvent = answer
    const time: number = stored.timestamp
    void time
  }
  const page: EventsPage = await Builder.getEvents(url, undefined, undefined, null, '', ['a', 'b'], page0(), 10)
  const next: string | null = page.next_offset
  void next
  const maybe = await Builder.getEvents(url, 0, 1, '', '', '', '', 1, null, (error: EventlineError) => {
    const status: number = error.status
    const code: string | undefined = error.problem?.code
    void status, code
  })
  if (maybe) void maybe.events
}
const page0 = () => '0'
void promises

const options = Builder.configure({ queue: true, batchLenMax: 10 })
const retries: number = options.retries
void retries
void Builder.flush()

// @ts-expect-error content must be an object
Builder.postEvent(url, { event_type: 'x', content: 'text' })
// @ts-expect-error event_type is required
Builder.postEvent(url, { content: {} })
// @ts-expect-error scope is app or site
Builder.postEvent(url, { ...event, scope: 'web' })
// @ts-expect-error unknown option
Builder.configure({ retry: 3 })
