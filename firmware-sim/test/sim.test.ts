import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { join } from 'node:path'
import { startTestApp, type TestApp } from '../../test/helpers/app.ts'
import { run, ROOT } from '../../test/helpers/proc.ts'
import { makePerson, measure, prng } from '../model.ts'

describe('firmware simulator', () => {
  let t: TestApp
  // the fast-forward scenarios send far more than a real device's 10 messages a second
  beforeAll(async () => { t = await startTestApp({ 'mqtt.publishRatePerS': 100_000, 'mqtt.publishBurst': 100_000 }) })
  afterAll(async () => { await t?.stop() })

  it('npm run sim drives 20 devices; every reading is acknowledged and the demo resident receives alerts', async () => {
    const r = await run(process.execPath, ['--import', 'tsx', join(ROOT, 'firmware-sim/cli.ts'), '--url', `mqtt://127.0.0.1:${t.mqttPort}`,
      '--credentials', join(t.dataDir, 'demo-credentials.json'), '--devices', '20', '--interval', '0.2', '--duration', '6'], 40_000)
    expect(r.code, r.stdout + r.stderr).toBe(0)
    expect(r.stdout).toMatch(/ALERT alerts\/demo-resident \[critical, open\] .*hypertensive crisis/)
    const last = r.stdout.split('\n').filter(Boolean).pop()!
    const summary = /(\d+) readings sent, (\d+) acknowledged, (\d+) still buffered/.exec(last)!
    expect(Number(summary[1])).toBeGreaterThan(400)
    expect(summary[3]).toBe('0')
    expect(last).toMatch(/load generator CPU \d+ ms/)
    await t.app.drain.idle()
    const stored = await t.app.store.queryRange('demo-resident', 0, Date.now() + 1e6, 10_000)
    expect(stored.length).toBeGreaterThanOrEqual(25)
    expect(t.app.alerts.forResident('demo-resident').some((a) => a.ruleKey === 'acc-aha-2017/bp-category' && a.detail.category === 'crisis')).toBe(true)
  })

  it('behaves like firmware: catches up after six hours offline, resends duplicates that are stored once, drifts its clock, warns locally', async () => {
    const creds = t.app.demo!.fleet.slice(50, 58)
    const { runFleet } = await import('../fleet.ts')
    const before = t.app.spool.stats.duplicates
    const stats = await runFleet({
      url: `mqtt://127.0.0.1:${t.mqttPort}`, devices: creds, intervalS: 0.01, durationS: 4, ticks: 400, seed: 7, batch: 50, simStepS: 120,
      firstScenario: 'offline-6h', mix: { 'duplicate-resends': 1, 'clock-drift': 1, 'crisis-episodes': 1 },
    })
    expect(stats.buffered).toBe(0)
    expect(stats.offlineBuffered).toBe(0) // back online after 6 simulated hours, and caught up
    expect(stats.duplicatesSent).toBeGreaterThan(0)
    expect(stats.errorsByCode.VM_IMPLAUSIBLE_READING).toBeGreaterThan(0) // the drifting clock ran more than 5 minutes ahead
    expect(stats.localWarnings).toBeGreaterThan(0) // crisis readings against the retained standards
    await t.app.drain.idle()
    const offline = await t.app.store.queryRange(creds[0]!.residentId, 0, Date.now() + 1e7, 100_000)
    expect(offline.length).toBeGreaterThan(180) // six hours of readings at one every two minutes, delivered late in batches
    expect(new Set(offline.map((r) => r.seq)).size).toBe(offline.length)
    // every deliberate resend of an accepted reading is a duplicate (one the server refused, e.g. a
    // heart rate out of range, is refused again: which readings a resend holds depends on timing);
    // a reading whose PUBACK was lost with a dropped connection (the machine under load) may be one too
    const dup = t.app.spool.stats.duplicates - before
    expect(dup).toBeGreaterThanOrEqual(stats.duplicatesSent - stats.resentRefused)
    expect(dup).toBeLessThanOrEqual(stats.duplicatesSent + stats.unconfirmed)
  })

  it('is deterministic for a seed and stays physiological', () => {
    const a = prng(42); const b = prng(42)
    const pa = makePerson(a, 'healthy'); const pb = makePerson(b, 'healthy')
    const t0 = Date.UTC(2026, 0, 1, 12)
    const ra = Array.from({ length: 200 }, (_, i) => measure(pa, t0 + i * 60_000, a, i))
    const rb = Array.from({ length: 200 }, (_, i) => measure(pb, t0 + i * 60_000, b, i))
    expect(ra).toEqual(rb)
    for (const r of ra) {
      expect(r.dia).toBeLessThan(r.sys)
      expect(r.hr).toBeGreaterThan(30)
      expect(r.hr).toBeLessThan(200)
    }
  })
})
