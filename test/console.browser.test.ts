import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { chromium, type Browser } from 'playwright-core'
import { startTestApp, type TestApp } from './helpers/app.ts'
import { run, ROOT } from './helpers/proc.ts'
import { connect } from './helpers/mqtt.ts'

const ARTIFACTS = join(ROOT, 'test-artifacts')
const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic', '--no-first-run']

/** The web console in Debian's chromium, driven by playwright-core. Screenshots go to test-artifacts/. */
describe('web console in a real browser', () => {
  let t: TestApp
  let browser: Browser
  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true })
    t = await startTestApp()
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_FLAGS })
  })
  afterAll(async () => { await browser?.close(); await t?.stop() })

  const pub = (body: Record<string, unknown>) => {
    const d = t.app.demo!.device
    return run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(t.mqttPort), '-i', d.deviceId, '-u', d.deviceId, '-P', d.secret, '-q', '1', '-t', `vitals/${d.deviceId}`, '-m', JSON.stringify({ v: 1, ts: Date.now(), ...body })])
  }

  it('a resident signs in, sees a reading published with mosquitto_pub on the chart within 2 seconds, and acknowledges an alert', async () => {
    const page = await browser.newPage({ viewport: { width: 1200, height: 1400 } })
    const errors: string[] = []
    page.on('pageerror', (e) => errors.push(e.message))
    await page.goto(`http://127.0.0.1:${t.httpPort}/`)
    await page.fill('#key', t.app.demo!.apiKeys.resident)
    await page.click('button[type=submit]')
    await page.waitForSelector('#live-state:has-text("live")', { timeout: 10_000 })
    expect(await page.textContent('#points')).toBe('0')

    expect((await pub({ seq: 1, hr: 77, sys: 131, dia: 83 })).code).toBe(0)
    const published = Date.now()
    await page.waitForSelector('#latest:has-text("131/83 mmHg, 77 bpm")', { timeout: 2000 })
    const seenAfterMs = Date.now() - published
    expect(seenAfterMs).toBeLessThan(2000)
    expect(await page.textContent('#points')).toBe('1')
    // the point is on the chart: uPlot draws its series into a canvas with the data we gave it
    expect(await page.locator('#chart-bp canvas').count()).toBe(1)
    await page.screenshot({ path: join(ARTIFACTS, 'console-resident-reading.png'), fullPage: true })

    expect((await pub({ seq: 2, hr: 90, sys: 192, dia: 124 })).code).toBe(0)
    const alert = page.locator('#alerts li[data-state="open"].critical')
    await alert.waitFor({ timeout: 5000 })
    expect(await alert.textContent()).toMatch(/hypertensive crisis/)
    await page.screenshot({ path: join(ARTIFACTS, 'console-resident-alert.png'), fullPage: true })
    await alert.locator('button', { hasText: 'Acknowledge' }).click()
    await page.locator('#alerts li[data-state="acknowledged"]').waitFor({ timeout: 5000 })
    const id = await page.locator('#alerts li[data-state="acknowledged"]').getAttribute('data-alert-id')
    expect(t.app.alerts.get(id!)).toMatchObject({ state: 'acknowledged', acknowledgedBy: 'resident:demo-resident' })

    await page.check('#consent')
    await page.waitForSelector('#consent-state:has-text("shared")')
    expect(t.app.registry.resident('demo-resident')!.researchConsent).toBe(true)
    await page.screenshot({ path: join(ARTIFACTS, 'console-resident-acknowledged.png'), fullPage: true })
    expect(errors).toEqual([])
    await page.close()
  })

  it('refuses a wrong key at sign-in', async () => {
    const page = await browser.newPage()
    await page.goto(`http://127.0.0.1:${t.httpPort}/console/`)
    await page.fill('#key', 'vm_000000000000_' + 'x'.repeat(32))
    await page.click('button[type=submit]')
    await page.waitForSelector('#login-error:has-text("not valid")')
    await page.close()
  })

  it('an operator sees a connected device online, and the node\'s statistics live', async () => {
    const d = t.app.demo!.fleet[5]!
    const device = await connect(t.mqttPort, d.deviceId, d.secret)
    const page = await browser.newPage({ viewport: { width: 1200, height: 1400 } })
    await page.goto(`http://127.0.0.1:${t.httpPort}/`)
    await page.fill('#key', t.app.demo!.apiKeys.operator)
    await page.click('button[type=submit]')
    await page.waitForSelector('#operator:not([hidden])')
    const row = page.locator(`#devices tr[data-device-id="${d.deviceId}"] td.online`)
    await row.waitFor({ timeout: 5000 })
    expect(await row.textContent()).toBe('online')
    expect(await page.locator('#devices tr[data-device-id="demo-dev-010"] td.offline').textContent()).toBe('offline')
    await pub({ seq: 3, hr: 70, sys: 120, dia: 78 })
    await page.waitForFunction(() => Number(document.getElementById('open-critical')!.textContent) >= 1)
    await page.screenshot({ path: join(ARTIFACTS, 'console-operator.png'), fullPage: true })
    // the device goes away: the operator sees it offline within the refresh
    await device.endAsync()
    await page.locator(`#devices tr[data-device-id="${d.deviceId}"] td.offline`).waitFor({ timeout: 5000 })
    await page.close()
  })
})
