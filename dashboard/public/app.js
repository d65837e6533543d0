// Eventline's dashboard: one page, no build step. The filter bar mirrors the getEvents
// parameters and lives in the URL, content filters too, as the API writes them
// (`content.PATH[op]=V`); the table reads /api/events, the chart /api/stats, and the
// live toggle follows /api/events/stream. Event data is only ever set as text, never as
// HTML.
'use strict'
;(() => {
  const $ = (selector) => document.querySelector(selector)
  const form = $('#filters')
  const tbody = $('#events tbody')
  const KEY_STORAGE = 'eventline.key'
  /** Filter fields, in the URL under the same names as the API's parameters. */
  const FILTERS = ['since', 'until', 'contact_id', 'scope', 'event_types', 'order', 'limit']
  const DEFAULTS = { order: 'desc', limit: '50', bucket: 'hour' }
  /** The chart's window when `since` is empty, by bucket. */
  const WINDOW_MS = { minute: 2 * 3600e3, hour: 48 * 3600e3, day: 30 * 86400e3 }
  const BUCKET_MS = { minute: 60e3, hour: 3600e3, day: 86400e3 }
  const DURATION = /^(\d+)\s*(s|m|h|d|w)$/
  const UNIT_MS = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 7 * 86400e3 }

  let key = localStorage.getItem(KEY_STORAGE) || ''
  let nextOffset = null
  let shown = 0
  let live = null
  let chart = null
  let chartRefresh = null

  // The state a test or a curious user can look at from the console.
  const dashboard = (window.eventlineDashboard = { stats: null, chartData: null, liveEvents: 0, liveOpen: false })

  // ---- content filters -------------------------------------------------------------

  /** Adds a content filter row; its fields are set as text. */
  function addCondition(path = '', op = 'eq', value = '') {
    const element = $('#condition').content.firstElementChild.cloneNode(true)
    element.querySelector('.path').value = path
    element.querySelector('.op').value = op
    element.querySelector('.value').value = value
    // The path's most common values, offered in the value field.
    const offerValues = () => loadKnownValues(element.querySelector('.path').value.trim())
    element.querySelector('.path').addEventListener('change', offerValues)
    element.querySelector('.value').addEventListener('focus', offerValues)
    element.querySelector('.remove').addEventListener('click', () => {
      element.remove()
      apply(true)
    })
    $('#conditions').append(element)
    return element
  }

  /** The rows with a path, as API parameters: `content.PATH[op]` and the value. */
  function conditions() {
    return [...document.querySelectorAll('#conditions .condition')]
      .map((element) => [
        element.querySelector('.path').value.trim(),
        element.querySelector('.op').value,
        element.querySelector('.value').value,
      ])
      .filter(([path]) => path)
      .map(([path, op, value]) => [`content.${path}[${op}]`, value])
  }

  /** Whether the store listed its content paths: the events shown are then not walked. */
  let pathsListed = false

  /** Offers the content paths the store knows (`/api/properties`), the most common first,
   * each labelled with its JSON types and how many values it holds. */
  async function loadKnownPaths() {
    try {
      const answer = await api('/api/properties', new URLSearchParams())
      $('#known-paths').replaceChildren(
        ...answer.properties
          // A key holding a dot or a bracket has no URL-form path.
          .filter(({ keys }) => !keys.some((name) => /[.[\]]/.test(name)))
          .map(({ path, types, events }) =>
            Object.assign(document.createElement('option'), {
              value: path,
              label: `${Object.keys(types).join(' or ')}, ${events} values`,
            }),
          ),
      )
      pathsListed = true
    } catch {
      // Listing paths needs a secret key on a server with keys: the paths of the events
      // shown are offered instead.
    }
  }

  /** Offers the path's most common values (`/api/properties/values`) in the value fields. */
  async function loadKnownValues(path) {
    if (!path) return
    try {
      const answer = await api('/api/properties/values', new URLSearchParams({ path, limit: '50' }))
      $('#known-values').replaceChildren(
        ...answer.values.map(({ value, events }) =>
          Object.assign(document.createElement('option'), {
            value: typeof value === 'string' ? value : JSON.stringify(value),
            label: `${events} events`,
          }),
        ),
      )
    } catch {
      $('#known-values').replaceChildren()
    }
  }

  /** Offers the content paths of the events shown, when the store could not list them. */
  function learnPaths(events) {
    if (pathsListed) return
    const list = $('#known-paths')
    const known = new Set([...list.options].map((option) => option.value))
    const walk = (value, prefix) => {
      if (!value || typeof value !== 'object' || Array.isArray(value)) return
      for (const [name, inner] of Object.entries(value)) {
        // A key holding a dot or a bracket has no URL-form path.
        if (/[.[\]]/.test(name)) continue
        const path = prefix ? `${prefix}.${name}` : name
        if (known.size < 500 && !known.has(path)) {
          known.add(path)
          list.append(Object.assign(document.createElement('option'), { value: path }))
        }
        walk(inner, path)
      }
    }
    for (const event of events) walk(event.content, '')
  }

  // ---- URL ⇄ form ----------------------------------------------------------------

  function readUrl() {
    const params = new URLSearchParams(location.search)
    for (const name of FILTERS) form.elements[name].value = params.get(name) ?? DEFAULTS[name] ?? ''
    $('#bucket').value = params.get('bucket') || DEFAULTS.bucket
    $('#live').checked = params.get('live') === '1'
    $('#conditions').replaceChildren()
    for (const [name, value] of params) {
      const match = /^content\.(.+?)(?:\[(\w+)\])?$/.exec(name)
      if (match) addCondition(match[1], match[2] || 'eq', value)
    }
  }

  function writeUrl(push) {
    const params = new URLSearchParams()
    for (const name of FILTERS) {
      const value = form.elements[name].value.trim()
      if (value && value !== DEFAULTS[name]) params.set(name, value)
    }
    for (const [name, value] of conditions()) params.append(name, value)
    if ($('#bucket').value !== DEFAULTS.bucket) params.set('bucket', $('#bucket').value)
    if ($('#live').checked) params.set('live', '1')
    const url = params.size ? `?${params}` : location.pathname
    if (push) history.pushState(null, '', url)
    else history.replaceState(null, '', url)
  }

  /** `2h`, `7d`… mean that long ago; anything else goes to the server as typed. */
  function time(text) {
    const match = DURATION.exec(text.trim())
    return match ? String(Date.now() - Number(match[1]) * UNIT_MS[match[2]]) : text.trim()
  }

  /** The filters as API parameters; with `paging`, order and limit too. */
  function filterParams(paging) {
    const params = new URLSearchParams()
    for (const name of FILTERS) {
      if (!paging && (name === 'order' || name === 'limit')) continue
      let value = form.elements[name].value.trim()
      if (name === 'since' || name === 'until') value = value && time(value)
      if (value) params.set(name, value)
    }
    for (const [name, value] of conditions()) params.append(name, value)
    return params
  }

  // ---- the API ---------------------------------------------------------------------

  async function api(path, params) {
    const headers = key ? { authorization: `Bearer ${key}` } : {}
    const response = await fetch(`${path}?${params}`, { headers })
    const body = await response.json().catch(() => null)
    if (!response.ok) {
      const error = new Error(body?.detail || `${response.status} ${response.statusText}`)
      error.status = response.status
      error.problem = body
      throw error
    }
    return body
  }

  function showMessage(text, kind = 'error') {
    const message = $('#message')
    message.hidden = !text
    message.textContent = text || ''
    message.className = kind
  }

  function explain(error) {
    if (error.status === 401) return 'This server needs a secret key to read: enter it above.'
    if (error.status === 403) return 'This key may not read here: enter a secret key above.'
    const parameter = error.problem?.parameter ? ` (${error.problem.parameter})` : ''
    return `${error.message}${parameter}`
  }

  // ---- the table -------------------------------------------------------------------

  function filterLink(text, name) {
    const link = document.createElement('a')
    link.className = 'filter'
    link.textContent = text
    link.title = `Show only ${name === 'event_types' ? 'this type' : 'this contact'}`
    link.addEventListener('click', () => {
      form.elements[name].value = text
      apply(true)
    })
    return link
  }

  function row(event, fresh) {
    const tr = document.createElement('tr')
    tr.dataset.id = event.id
    if (fresh) tr.className = 'fresh'
    const cell = (className, content) => {
      const td = document.createElement('td')
      td.className = className
      if (typeof content === 'string') td.textContent = content
      else if (content) td.append(content)
      tr.append(td)
      return td
    }
    cell('time', new Date(event.timestamp).toISOString().replace('T', ' ').replace('Z', ''))
    cell('type', filterLink(event.event_type, 'event_types'))
    cell('contact', event.contact_id ? filterLink(event.contact_id, 'contact_id') : '–')
    cell('scope', event.scope)
    const content = cell('content', JSON.stringify(event.content))
    content.title = 'Click to expand'
    content.addEventListener('click', () => {
      const open = content.classList.toggle('open')
      content.textContent = open ? JSON.stringify(event, null, 2) : JSON.stringify(event.content)
    })
    return tr
  }

  function countShown() {
    $('#shown').textContent = `${shown} event${shown === 1 ? '' : 's'} shown`
    $('#more').hidden = !nextOffset
  }

  async function loadEvents(more) {
    const params = filterParams(true)
    if (more) params.set('offset', nextOffset)
    const page = await api('/api/events', params)
    if (!more) {
      tbody.replaceChildren()
      shown = 0
    }
    for (const event of page.events) tbody.append(row(event, false))
    learnPaths(page.events)
    shown += page.events.length
    nextOffset = page.next_offset
    countShown()
  }

  // ---- the chart -------------------------------------------------------------------

  async function loadChart() {
    const bucket = $('#bucket').value
    const params = filterParams(false)
    const untilMs = params.has('until') ? null : Date.now()
    if (!params.has('since')) params.set('since', String((untilMs ?? Date.now()) - WINDOW_MS[bucket]))
    if (untilMs !== null) params.set('until', String(untilMs))
    params.set('bucket', bucket)
    const stats = await api('/api/stats', params)
    dashboard.stats = stats
    // Every bucket of the window, empty ones as zero, so time reads evenly.
    const step = BUCKET_MS[bucket]
    const counts = new Map(stats.buckets.map((b) => [b.start, b.total]))
    const xs = []
    const ys = []
    const first = Math.floor(stats.since / step) * step
    for (let start = first; start < stats.until; start += step) {
      xs.push(start / 1000)
      ys.push(counts.get(start) ?? 0)
    }
    dashboard.chartData = { bucket, starts: xs.map((x) => x * 1000), counts: ys }
    drawChart([xs, ys])
    $('#chart-total').textContent = `${stats.total} events in the window`
    const list = $('#chart-counts')
    list.replaceChildren()
    for (const [type, count] of Object.entries(stats.types).sort((a, b) => b[1] - a[1])) {
      const item = document.createElement('li')
      item.dataset.type = type
      item.append(filterLink(type, 'event_types'), `: ${count}`)
      list.append(item)
    }
  }

  function drawChart(data) {
    const element = $('#chart')
    const width = element.clientWidth || 800
    if (chart) {
      chart.setData(data)
      return
    }
    chart = new uPlot(
      {
        width,
        height: 220,
        scales: { x: { time: true } },
        series: [
          {},
          {
            label: 'events',
            stroke: '#2f6fed',
            fill: 'rgba(47, 111, 237, 0.35)',
            paths: uPlot.paths.bars({ size: [0.7, 40] }),
            points: { show: false },
          },
        ],
        axes: [{}, { size: 50 }],
      },
      data,
      element,
    )
    dashboard.chart = chart
    window.addEventListener('resize', () => chart.setSize({ width: element.clientWidth, height: 220 }))
  }

  function refreshChartSoon() {
    clearTimeout(chartRefresh)
    chartRefresh = setTimeout(() => loadChart().catch((error) => showMessage(explain(error))), 300)
  }

  // ---- live ------------------------------------------------------------------------

  function stopLive() {
    live?.close()
    live = null
    dashboard.liveOpen = false
  }

  function startLive() {
    stopLive()
    const params = filterParams(false)
    // EventSource cannot send headers: the key goes in the URL.
    if (key) params.set('key', key)
    const source = new EventSource(`/api/events/stream?${params}`)
    live = source
    source.addEventListener('message', (message) => {
      const event = JSON.parse(message.data)
      dashboard.liveEvents += 1
      // Stored between the page's read and the stream's start: already shown.
      if (tbody.querySelector(`tr[data-id="${CSS.escape(event.id)}"]`)) return
      if (form.elements.order.value === 'desc') {
        tbody.prepend(row(event, true))
      } else if (!nextOffset) {
        tbody.append(row(event, true))
      }
      shown += 1
      countShown()
      refreshChartSoon()
    })
    source.addEventListener('closed', (message) => {
      const closed = JSON.parse(message.data)
      // The browser reconnects by itself with the last id: nothing is lost.
      showMessage(`Live stream: ${closed.detail}. Reconnecting…`, 'info')
    })
    source.addEventListener('open', () => {
      dashboard.liveOpen = true
      if ($('#message').className === 'info') showMessage('')
    })
    source.addEventListener('error', () => {
      dashboard.liveOpen = false
      if (source.readyState === EventSource.CLOSED) {
        showMessage('The live stream was refused: check the filters, or enter a secret key above.')
        $('#live').checked = false
        writeUrl(false)
      }
    })
  }

  // ---- wiring ----------------------------------------------------------------------

  async function load() {
    showMessage('')
    try {
      await Promise.all([loadEvents(false), loadChart()])
    } catch (error) {
      // Live waits until reading works (a key, a valid filter); its box stays as asked.
      stopLive()
      showMessage(explain(error))
      return
    }
    if ($('#live').checked) startLive()
    else stopLive()
  }

  function apply(push) {
    writeUrl(push)
    return load()
  }

  async function loadKnownTypes() {
    try {
      const answer = await api('/api/event-types', new URLSearchParams())
      $('#known-types').replaceChildren(
        ...answer.event_types.map(({ event_type }) => Object.assign(document.createElement('option'), { value: event_type })),
      )
    } catch {
      // Listing types needs a secret key on a server with keys; the field works without.
    }
  }

  form.addEventListener('submit', (submit) => {
    submit.preventDefault()
    apply(true)
  })
  $('#clear').addEventListener('click', () => {
    for (const name of FILTERS) form.elements[name].value = DEFAULTS[name] ?? ''
    $('#conditions').replaceChildren()
    apply(true)
  })
  $('#add-condition').addEventListener('click', () => addCondition().querySelector('.path').focus())
  $('#live').addEventListener('change', () => {
    writeUrl(false)
    if ($('#live').checked) startLive()
    else stopLive()
  })
  $('#bucket').addEventListener('change', () => {
    writeUrl(false)
    loadChart().catch((error) => showMessage(explain(error)))
  })
  $('#more').addEventListener('click', () => loadEvents(true).catch((error) => showMessage(explain(error))))
  $('#key').value = key
  $('#key-form').addEventListener('submit', (submit) => {
    submit.preventDefault()
    key = $('#key').value.trim()
    if (key) localStorage.setItem(KEY_STORAGE, key)
    else localStorage.removeItem(KEY_STORAGE)
    loadKnownTypes()
    loadKnownPaths()
    load()
  })
  window.addEventListener('popstate', () => {
    readUrl()
    load()
  })

  readUrl()
  loadKnownTypes()
  loadKnownPaths()
  load()
})()
