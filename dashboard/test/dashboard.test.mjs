// The dashboard in a real browser (Debian's Chromium through playwright-core) against the
// real Eventline server: live rows, click-to-filter, the chart's counts, the key field.
// Screenshots go to dashboard/test-output/.

import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, readFile } from 'node:fs/promises'
import { chromium } from 'playwright-core'

import { launchChromium, startServer } from '../../sdk/js/test/support.mjs'

const OUTPUT = new URL('../test-output/', import.meta.url)
const SECRET = 'sk_dashboard_test_0123456789abcdef'

let browser

before(async () => {
  await mkdir(OUTPUT, { recursive: true })
  browser = await launchChromium(chromium)
})

after(async () => {
  await browser?.close()
})

async function post(server, events, key) {
  const headers = { 'content-type': 'application/json' }
  if (key) headers.authorization = `Bearer ${key}`
  const response = await fetch(server.url('/api/events/batch'), { method: 'POST', headers, body: JSON.stringify(events) })
  assert.equal(response.status, 201, await response.text())
}

function events(count, eventType, contactId, extra = {}) {
  return Array.from({ length: count }, (_, n) => ({ event_type: eventType, contact_id: contactId, content: { n, ...extra } }))
}

async function screenshot(page, name) {
  await page.screenshot({ path: new URL(`${name}.png`, OUTPUT).pathname, fullPage: true })
}

/** The counts listed under the chart, by type. */
async function chartCounts(page) {
  return page.$$eval('#chart-counts li', (items) => Object.fromEntries(items.map((item) => [item.dataset.type, Number(item.textContent.split(': ').pop())])))
}

async function chartTotal(page) {
  return page.evaluate(() => window.eventlineDashboard.chartData?.counts.reduce((sum, count) => sum + count, 0))
}

test('live rows, click to filter, and chart counts that match what was posted', async () => {
  const server = await startServer()
  try {
    // Event data is shown as text: markup in it must stay inert.
    await post(server, [
      ...events(5, 'signup', 'c-1'),
      ...events(3, 'purchase', 'c-2', { html: '<img src=x onerror="window.pwned=1">' }),
    ])
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
    const errors = []
    page.on('pageerror', (error) => errors.push(error))
    await page.goto(server.url('/?live=1'))
    await page.waitForFunction(() => document.querySelectorAll('#events tbody tr').length === 8)
    await page.waitForFunction(() => window.eventlineDashboard.liveOpen === true)
    assert.deepEqual(await chartCounts(page), { signup: 5, purchase: 3 })
    assert.equal(await chartTotal(page), 8)
    assert.equal(await page.evaluate(() => window.pwned), undefined)
    assert.match(await page.textContent('#events tbody'), /<img src=x onerror/)
    await screenshot(page, '1-loaded')

    // Posted from outside the page: they appear live, newest first, and the chart follows.
    await post(server, [...events(2, 'signup', 'c-3'), ...events(2, 'refund', 'c-2')])
    await page.waitForFunction(() => window.eventlineDashboard.liveEvents === 4)
    assert.equal(await page.locator('#events tbody tr').count(), 12)
    assert.equal(await page.locator('#events tbody tr.fresh').count(), 4)
    const topTypes = await page.$$eval('#events tbody tr td.type', (cells) => cells.slice(0, 4).map((cell) => cell.textContent).sort())
    assert.deepEqual(topTypes, ['refund', 'refund', 'signup', 'signup'])
    await page.waitForFunction(() => window.eventlineDashboard.stats?.total === 12)
    assert.deepEqual(await chartCounts(page), { signup: 7, purchase: 3, refund: 2 })
    assert.equal(await chartTotal(page), 12)
    await screenshot(page, '2-live')

    // Another bucket: the same events, counted by minute.
    await page.selectOption('#bucket', 'minute')
    await page.waitForFunction(() => window.eventlineDashboard.chartData?.bucket === 'minute')
    assert.equal(await chartTotal(page), 12)
    assert.match(page.url(), /bucket=minute/)

    // Clicking a type filters by it: the table, the chart and the URL.
    await page.locator('#events tbody td.type a', { hasText: 'refund' }).first().click()
    await page.waitForFunction(() => document.querySelectorAll('#events tbody tr').length === 2)
    assert.match(page.url(), /event_types=refund/)
    assert.deepEqual(await page.$$eval('#events tbody td.type', (cells) => [...new Set(cells.map((cell) => cell.textContent))]), ['refund'])
    await page.waitForFunction(() => window.eventlineDashboard.stats?.total === 2)
    assert.deepEqual(await chartCounts(page), { refund: 2 })
    assert.equal(await page.inputValue('#filters input[name=event_types]'), 'refund')
    // Live follows the filter: a signup does not show, a refund does.
    await page.waitForFunction(() => window.eventlineDashboard.liveOpen === true)
    await post(server, [...events(1, 'signup', 'c-1'), ...events(1, 'refund', 'c-9')])
    await page.waitForFunction(() => document.querySelectorAll('#events tbody tr').length === 3)
    assert.deepEqual(await page.$$eval('#events tbody td.type', (cells) => [...new Set(cells.map((cell) => cell.textContent))]), ['refund'])

    // The content opens to the whole event, pretty-printed.
    const content = page.locator('#events tbody td.content').first()
    await content.click()
    assert.match(await content.textContent(), /\n {2}"id": "/)
    await screenshot(page, '3-filtered-by-type')

    // A contact, then back: the URL holds the state, history walks it.
    await page.locator('#events tbody td.contact a', { hasText: 'c-2' }).first().click()
    await page.waitForFunction(() => new URL(location.href).searchParams.get('contact_id') === 'c-2')
    await page.waitForFunction(() => document.querySelectorAll('#events tbody tr').length === 2)
    await page.goBack()
    await page.waitForFunction(() => !new URL(location.href).searchParams.has('contact_id'))
    await page.waitForFunction(() => document.querySelectorAll('#events tbody tr').length === 3)

    // The state in the URL is the page: opening it anew shows the same.
    const reopened = await browser.newPage()
    await reopened.goto(page.url())
    await reopened.waitForFunction(() => document.querySelectorAll('#events tbody tr').length === 3)
    assert.equal(await reopened.inputValue('#filters input[name=event_types]'), 'refund')
    assert.equal(await reopened.inputValue('#bucket'), 'minute')
    await reopened.close()
    assert.deepEqual(errors, [])
    await page.close()
  } finally {
    await server.stop()
  }
})

test('content filters: added, edited and removed over the table, the chart, live and the URL', async () => {
  const server = await startServer()
  try {
    const order = (store, total, city) => ({ event_type: 'order', contact_id: 'c-1', content: { store_id: store, total, address: { city } } })
    await post(server, [
      order('appmachine', 10, 'Paris'),
      order('appmachine', 120, 'Lyon'),
      order('other', 300, 'Paris'),
      order('other', 40, 'Lyon'),
    ])
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
    const errors = []
    page.on('pageerror', (error) => errors.push(error))
    await page.goto(server.url('/?live=1'))
    await page.waitForFunction(() => document.querySelectorAll('#events tbody tr').length === 4)
    // The store's content paths are offered (/api/properties), each with its types.
    await page.waitForFunction(() => document.querySelectorAll('#known-paths option').length === 4)
    const paths = await page.$$eval('#known-paths option', (options) =>
      Object.fromEntries(options.map((option) => [option.value, option.label])),
    )
    assert.deepEqual(paths, {
      address: 'object, 4 values',
      'address.city': 'string, 4 values',
      store_id: 'string, 4 values',
      total: 'number, 4 values',
    })

    // Added: store_id = appmachine, its values offered (/api/properties/values).
    await page.click('#add-condition')
    await page.fill('.condition .path', 'store_id')
    await page.locator('.condition .path').dispatchEvent('change')
    await page.waitForFunction(() => document.querySelectorAll('#known-values option').length === 2)
    assert.deepEqual(
      await page.$$eval('#known-values option', (options) => options.map((option) => [option.value, option.label])),
      [['appmachine', '2 events'], ['other', '2 events']],
    )
    await page.fill('.condition .value', 'appmachine')
    await page.click('#filters button[type=submit]')
    await page.waitForFunction(() => document.querySelectorAll('#events tbody tr').length === 2)
    await page.waitForFunction(() => window.eventlineDashboard.stats?.total === 2)
    assert.equal(new URL(page.url()).searchParams.get('content.store_id[eq]'), 'appmachine')

    // A second one, a comparison: total ≥ 100.
    await page.click('#add-condition')
    await page.locator('.condition .path').nth(1).fill('total')
    await page.locator('.condition .op').nth(1).selectOption('gte')
    await page.locator('.condition .value').nth(1).fill('100')
    await page.click('#filters button[type=submit]')
    await page.waitForFunction(() => document.querySelectorAll('#events tbody tr').length === 1)
    await page.waitForFunction(() => window.eventlineDashboard.stats?.total === 1)
    assert.match(await page.textContent('#events tbody'), /"total":120/)

    // Live follows the filters: only a matching event shows.
    await page.waitForFunction(() => window.eventlineDashboard.liveOpen === true)
    await post(server, [order('appmachine', 5, 'Paris'), order('appmachine', 500, 'Nice')])
    await page.waitForFunction(() => document.querySelectorAll('#events tbody tr').length === 2)
    assert.match(await page.textContent('#events tbody tr.fresh'), /"total":500/)
    await screenshot(page, '6-content-filters')

    // Edited: the first becomes address.city = Paris, over every store.
    await page.locator('.condition .path').first().fill('address.city')
    await page.locator('.condition .value').first().fill('Paris')
    await page.click('#filters button[type=submit]')
    await page.waitForFunction(() => document.querySelectorAll('#events tbody tr').length === 1)
    assert.match(await page.textContent('#events tbody'), /"total":300/)

    // The URL is the page: reopened, the same filters and rows.
    const reopened = await browser.newPage()
    await reopened.goto(page.url())
    await reopened.waitForFunction(() => document.querySelectorAll('#events tbody tr').length === 1)
    assert.deepEqual(await reopened.$$eval('.condition .path', (inputs) => inputs.map((input) => input.value)), ['address.city', 'total'])
    await reopened.close()

    // Removed, one then the other: every event again.
    await page.locator('.condition .remove').nth(1).click()
    // Paris: 10, 300 and 5.
    await page.waitForFunction(() => document.querySelectorAll('#events tbody tr').length === 3)
    await page.locator('.condition .remove').first().click()
    await page.waitForFunction(() => document.querySelectorAll('#events tbody tr').length === 6)
    await page.waitForFunction(() => window.eventlineDashboard.stats?.total === 6)
    assert.ok(!new URL(page.url()).search.includes('content.'))

    // A bad filter is explained, naming it.
    await page.click('#add-condition')
    await page.fill('.condition .path', 'total')
    await page.locator('.condition .op').selectOption('in')
    await page.fill('.condition .value', 'not a list')
    await page.click('#filters button[type=submit]')
    await page.waitForFunction(() => document.querySelector('#message').textContent.includes('content.total[in]'))
    assert.deepEqual(errors, [])
    await page.close()
  } finally {
    await server.stop()
  }
})

test('a server with keys asks for the secret key, and the dashboard works once given', async () => {
  const server = await startServer(['--secret-key', SECRET])
  try {
    await post(server, events(2, 'keyed', 'c-1'), SECRET)
    const page = await browser.newPage({ viewport: { width: 1280, height: 700 } })
    await page.goto(server.url('/?live=1'))
    await page.waitForFunction(() => document.querySelector('#message').textContent.includes('secret key'))
    await screenshot(page, '4-key-required')
    await page.fill('#key', SECRET)
    await page.click('#key-form button')
    await page.waitForFunction(() => document.querySelectorAll('#events tbody tr').length === 2)
    await page.waitForFunction(() => window.eventlineDashboard.stats?.total === 2)
    assert.equal(await page.locator('#message').isHidden(), true)
    assert.deepEqual(await chartCounts(page), { keyed: 2 })
    // Live with the key (in the stream's URL, since EventSource sends no headers).
    await page.check('#live')
    await page.waitForFunction(() => window.eventlineDashboard.liveOpen === true)
    await post(server, events(1, 'keyed', 'c-2'), SECRET)
    await page.waitForFunction(() => document.querySelectorAll('#events tbody tr').length === 3)
    await page.waitForFunction(() => window.eventlineDashboard.stats?.total === 3)
    // The key is remembered by this browser, not put in the page's URL.
    assert.doesNotMatch(page.url(), /sk_/)
    await screenshot(page, '5-with-key')
    await page.close()
  } finally {
    await server.stop()
  }
})

test('the vendored uPlot is the npm package, unchanged, with its licence', async () => {
  for (const [vendored, packaged] of [
    ['uPlot.iife.min.js', 'dist/uPlot.iife.min.js'],
    ['uPlot.min.css', 'dist/uPlot.min.css'],
    ['LICENSE', 'LICENSE'],
  ]) {
    const ours = await readFile(new URL(`../public/vendor/uplot/${vendored}`, import.meta.url))
    const theirs = await readFile(new URL(`../node_modules/uplot/${packaged}`, import.meta.url))
    assert.ok(ours.equals(theirs), `${vendored} differs from uplot's ${packaged}`)
  }
})
