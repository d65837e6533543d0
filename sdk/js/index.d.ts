// Type declarations for Eventline's JavaScript SDK, written by hand and checked by `tsc`
// (npm run typecheck) against test/types.ts.

/** An event to post. Only `event_type` and `content` are required. */
export interface NewEvent {
  event_type: string
  /** Any JSON object, as long as it is an object. */
  content: Record<string, unknown>
  /** The idempotency key. The SDK sets a UUIDv7 when it is absent. */
  id?: string
  /** Absent, null or empty means "no contact". */
  contact_id?: string | null
  scope?: Scope
  /** Unix seconds, Unix milliseconds or RFC 3339. The SDK sets the time of the call when
   * it is absent and `sentAt` is on. */
  timestamp?: number | string
  /** The device clock when sent; the SDK sets it on each attempt when `sentAt` is on. */
  sent_at?: number | string
}

export type Scope = 'app' | 'site'

/** An event as the server stored it. */
export interface StoredEvent {
  id: string
  event_type: string
  content: Record<string, unknown>
  contact_id: string | null
  scope: Scope
  /** Unix milliseconds. */
  timestamp: number
  /** Unix milliseconds, the server's clock. */
  received_at: number
}

/** The answer of `getEvents`. */
export interface EventsPage {
  events: StoredEvent[]
  /** Pass it back as `offset` for the next page; null when there is nothing more. */
  next_offset: string | null
}

/** A condition on an event's `content`: the value at `path` (a dot path, or its keys)
 * compared by `op` (default `eq`) with `value`, by JSON type. */
export interface ContentCondition {
  path: string | string[]
  op?: 'eq' | 'ne' | 'gt' | 'gte' | 'lt' | 'lte' | 'in' | 'exists' | 'contains' | 'icontains'
  value: unknown
}

/** Conditions that all hold, or a tree of them. */
export type ContentFilter =
  | ContentCondition
  | { and: ContentFilter[] }
  | { or: ContentFilter[] }
  | { not: ContentFilter }

/** The read of `queryEvents`: the parameters of `getEvents`, `order` and `where`. */
export interface EventsQuery {
  since?: number | string | Date | null
  until?: number | string | Date | null
  contactId?: string | null
  scope?: Scope | '' | null
  eventTypes?: string | string[] | null
  offset?: string | number | null
  limit?: number | null
  order?: 'asc' | 'desc' | null
  where?: ContentFilter[] | ContentFilter | null
}

/** What a post resolves with in queued mode: the answer of the batch that carried it,
 * or, for events sent by beacon as the page went away, their ids. */
export type QueuedAnswer =
  | { stored: number; replayed: number; ids: string[] }
  | { beacon: true; ids: string[] }

/** RFC 9457 problem details, as the server sends them. */
export interface Problem {
  type: string
  title: string
  status: number
  detail: string
  code: string
  field?: string
  parameter?: string
  line?: number
  column?: number
  index?: number
  error_count?: number
  errors?: Array<{ index: number; code: string; field?: string; detail: string }>
}

/** What `onError` receives and what a Promise without `onError` rejects with. */
export interface EventlineError extends Error {
  name: 'EventlineError'
  /** The HTTP status; 0 when no answer came (network failure, timeout, full queue). */
  status: number
  /** The server's problem details, or null when it sent none. */
  problem: Problem | null
}

export interface Options {
  /** Attempts after the first one (default 5). */
  retries: number
  /** The first backoff's upper bound (default 500 ms); it doubles per attempt. */
  retryBaseMs: number
  /** The longest single wait (default 30 s). */
  retryCapMs: number
  /** No attempt starts later than this after the first (default 60 s). */
  retryWindowMs: number
  /** One attempt is abandoned after this long (default 10 s). */
  timeoutMs: number
  /** Send `sent_at` so the server corrects a skewed device clock (default true). */
  sentAt: boolean
  /** Queued mode: batch, persist in localStorage, beacon on unload (default false). */
  queue: boolean
  /** The batch endpoint; by default derived from the post URL (`…/post` → `…/batch`). */
  batchUrl: string
  /** How long a queued event waits for others before a batch is sent (default 1 s). */
  flushIntervalMs: number
  /** Events per batch request (default 100). */
  batchLenMax: number
  /** Events kept in the queue; past it, posts fail (default 1,000). */
  queueLenMax: number
  /** Prefix of the localStorage keys (default `eventline:queue`). */
  storageKey: string
}

export type OnSuccess<T> = (response: T) => void
export type OnError = (error: EventlineError) => void

/** What a post resolves with: the stored event, or in queued mode a `QueuedAnswer`. */
export type PostAnswer = StoredEvent | QueuedAnswer

export interface BuilderApi {
  /** Post an event. Without `onError` the Promise rejects on failure; with it, the
   * error goes to `onError` and the Promise resolves with undefined. */
  postEvent(url: string, event: NewEvent, onSuccess?: OnSuccess<PostAnswer> | null): Promise<PostAnswer>
  postEvent(
    url: string,
    event: NewEvent,
    onSuccess: OnSuccess<PostAnswer> | null | undefined,
    onError: OnError,
  ): Promise<PostAnswer | undefined>

  /** Get a page of events. Empty strings, null and undefined mean "no filter". */
  getEvents(
    url: string,
    since?: number | string | Date | null,
    until?: number | string | Date | null,
    contactId?: string | null,
    scope?: Scope | '' | null,
    eventTypes?: string | string[] | null,
    offset?: string | number | null,
    limit?: number | null,
    onSuccess?: OnSuccess<EventsPage> | null,
  ): Promise<EventsPage>
  getEvents(
    url: string,
    since: number | string | Date | null | undefined,
    until: number | string | Date | null | undefined,
    contactId: string | null | undefined,
    scope: Scope | '' | null | undefined,
    eventTypes: string | string[] | null | undefined,
    offset: string | number | null | undefined,
    limit: number | null | undefined,
    onSuccess: OnSuccess<EventsPage> | null | undefined,
    onError: OnError,
  ): Promise<EventsPage | undefined>

  /** Query events with content filters: POSTs the query as JSON to `url` (the server's
   * `/api/events/query`). */
  queryEvents(url: string, query?: EventsQuery | null, onSuccess?: OnSuccess<EventsPage> | null): Promise<EventsPage>
  queryEvents(
    url: string,
    query: EventsQuery | null | undefined,
    onSuccess: OnSuccess<EventsPage> | null | undefined,
    onError: OnError,
  ): Promise<EventsPage | undefined>

  /** Changes options for the calls that follow; returns the options in force. */
  configure(changes: Partial<Options>): Options

  /** Sends queued events now; resolves when the queue is empty or the server is out of
   * reach (a later flush tries again). */
  flush(): Promise<void>
}

export const Builder: BuilderApi
export default Builder
