import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { join } from 'node:path'
import { startTestApp, type TestApp } from '../../test/helpers/app.ts'
import { run, ROOT } from '../../test/helpers/proc.ts'
import { makePerson, measure, prng } from '../model.ts'

describe('firmware simulator', () => {
  let t: TestApp
  beforeAll(async () => { t = await startTestApp() })
  afterAll(async () => { await t?.stop() })

  it('npm run sim drives 20 devices; every reading is acknowledged and the demo resident receives alerts', async () => {
    const r = await run(process.execPath, ['--import', 'tsx', join(ROOT, 'firmware-sim/cli.ts'), '--url', `mqtt://127.0.0.1:${t.mqttPort}`,
      '--credentials', join(t.dataDir, 'demo-credentials.json'), '--devices', '20', '--interval', '0.2', '--duration', '6'], 40_000)
    expect(r.code, r.stdout + r.stderr).toBe(0)
    expect(r.stdout).toMatch(/ALERT alerts\/demo-resident \[critical, open\] .*hypertensive crisis/)
    const summary = /(\d+) readings sent, (\d+) acknowledged, (\d+) device errors, (\d+) alerts/.exec(r.stdout.split('\n').filter(Boolean).pop()!)!
    expect(Number(summary[1])).toBeGreaterThan(400)
    expect(summary[2]).toBe(summary[1])
    expect(summary[3]).toBe('0')
    await t.app.drain.idle()
    const stored = await t.app.store.queryRange('demo-resident', 0, Date.now() + 1e6, 10_000)
    expect(stored.length).toBeGreaterThanOrEqual(25)
    expect(t.app.alerts.forResident('demo-resident').some((a) => a.ruleKey === 'acc-aha-2017/bp-category' && a.detail.category === 'crisis')).toBe(true)
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
