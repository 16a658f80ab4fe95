import { describe, expect, it } from 'vitest'
import { openDatabase, ManualClock, silentLogger, type DB } from '../../core/index.ts'
import { AlertBook, RuleSetDocSchema, type Alert, type RuleSetDoc, type Override } from '../index.ts'

const T0 = Date.UTC(2026, 10, 1, 8)
const ruleSet = (rules: unknown[], id = 'rs'): RuleSetDoc => RuleSetDocSchema.parse({ id, version: '1.0.0', publisher: 'p', citation: 'c', effectiveDate: '2026-01-01', audience: { kind: 'all' }, rules })

const HR_HIGH = { id: 'hr-high', title: { en: 'High heart rate', 'zh-CN': '心率过高' }, kind: 'sustained', severity: 'warning', when: [{ metric: 'hr', op: '>', value: 120 }], forS: 600, clear: { hysteresis: 5, holdDownS: 120 }, cooldownS: 900 }
const CRISIS = { id: 'crisis', title: 'Crisis', kind: 'threshold', severity: 'critical', when: [{ metric: 'sys', op: '>', value: 180 }] }
const SILENT = { id: 'silent', title: 'No data', kind: 'noData', severity: 'warning', forS: 3600 }

function setup (rules: unknown[], o: { db?: DB, clock?: ManualClock, language?: string, hospital?: boolean, overrides?: Map<string, Override> } = {}) {
  const db = o.db ?? openDatabase(':memory:')
  const clock = o.clock ?? new ManualClock(T0)
  const sent: Alert[] = []
  const status: unknown[] = []
  const webhooks: { url: string, body: string, idempotencyKey: string }[] = []
  const book = new AlertBook({
    db, clock, logger: silentLogger(),
    activeRuleSets: () => [ruleSet(rules)],
    resident: (id) => ({ id, birthYear: 1960, conditions: [], region: 'c1', language: o.language ?? 'en', hospitalId: o.hospital ? 'h1' : null }),
    overrides: () => o.overrides ?? new Map(),
    hospitalEndpoint: () => ({ url: 'http://hospital.example/hook', token: 't' }),
    enqueueWebhook: (e) => { webhooks.push(e) },
    options: { tickMs: 1000, escalateAfterS: 900, renotifyS: { critical: 300, warning: 3600, info: 0 }, checkpointMs: 0 },
  })
  book.setNotifier({ alert: (a, delivered) => { sent.push(structuredClone(a)); delivered() }, status: (_r, b) => status.push(b) })
  let seq = 0
  const feed = (minute: number, v: { hr?: number, sys?: number, dia?: number }, residentId = 'r1') => {
    clock.set(T0 + minute * 60_000)
    const row = { deviceId: 'd1', residentId, seq: seq++, ts: T0 + minute * 60_000, ...v }
    book.feed([row])
    book.flushDelivered()
  }
  const tick = (minute: number) => { clock.set(T0 + minute * 60_000); book.tick(); book.flushDelivered() }
  return { db, clock, book, sent, status, webhooks, feed, tick }
}

describe('alert lifecycle', () => {
  it('raises exactly one alert for a sustained condition, resolves it after hysteresis and hold-down, then cools down', () => {
    const { book, sent, feed } = setup([HR_HIGH])
    for (let m = 0; m <= 30; m++) feed(m, { hr: 130 })
    expect(sent.map((a) => [a.ruleKey, a.state])).toEqual([['rs/hr-high', 'open']])
    expect(sent[0]!.message).toMatch(/High heart rate: heart rate 130 bpm\. If you feel unwell .* seek care now; otherwise contact your doctor\./)
    expect(sent[0]!.message).not.toMatch(/[Rr]est/) // ten minutes at rest already: not told to rest
    feed(31, { hr: 117 }) // below 120 but within the hysteresis margin: still holds
    feed(33, { hr: 110 }) // clearly back: hold-down starts
    feed(34, { hr: 110 })
    expect(book.activeAlerts().length).toBe(1)
    feed(35, { hr: 110 }) // 2 minutes clear
    expect(sent.map((a) => a.state)).toEqual(['open', 'resolved'])
    for (let m = 36; m <= 47; m++) feed(m, { hr: 130 }) // true again for 11 minutes, but within the 15-minute cool-down
    expect(sent.length).toBe(2)
    expect(book.stats.suppressed).toBeGreaterThan(0)
    for (let m = 48; m <= 52; m++) feed(m, { hr: 130 })
    expect(sent.map((a) => a.state)).toEqual(['open', 'resolved', 'open'])
  })

  it('stores every transition with who and when; acknowledging is idempotent and stops re-notification', () => {
    const { book, sent, feed, tick } = setup([CRISIS])
    feed(0, { sys: 190, dia: 100 })
    const id = sent[0]!.id
    tick(5) // critical re-notified every 5 minutes while nobody acknowledges
    tick(6)
    tick(10)
    expect(sent.map((a) => a.state)).toEqual(['open', 'open', 'open'])
    const acked = book.acknowledge(id, 'resident:r1', 'r1')
    expect(acked).toMatchObject({ state: 'acknowledged', acknowledgedBy: 'resident:r1' })
    expect(book.acknowledge(id, 'resident:r1', 'r1').state).toBe('acknowledged')
    expect(() => book.acknowledge(id, 'resident:r2', 'r2')).toThrow(/no alert/)
    tick(20)
    expect(sent.length).toBe(3) // acknowledged: no more re-notification (the status topic says it is acknowledged)
    feed(21, { sys: 120, dia: 80 })
    expect(book.history(id).map((e) => [e.state, e.actor])).toEqual([['open', 'engine'], ['escalation-skipped:no-followers', 'engine'], ['escalated:duty-desk', 'engine'], ['acknowledged', 'resident:r1'], ['resolved', 'engine']])
  })

  it('escalates an unacknowledged critical alert to the resident\'s hospital once, through the outbox', () => {
    const { sent, feed, tick, webhooks } = setup([CRISIS], { hospital: true })
    feed(0, { sys: 195, dia: 100 })
    tick(14)
    expect(webhooks).toEqual([])
    tick(15)
    tick(16)
    expect(webhooks.length).toBe(1)
    expect(webhooks[0]!.idempotencyKey).toBe(`escalation:${sent[0]!.id}`)
    expect(JSON.parse(webhooks[0]!.body)).toMatchObject({ type: 'vitalmesh.alert.escalated', resident: { id: 'r1' }, alert: { id: sent[0]!.id, severity: 'critical' } })
  })

  it('does not escalate an acknowledged alert', () => {
    const { book, sent, feed, tick, webhooks } = setup([CRISIS], { hospital: true })
    feed(0, { sys: 195, dia: 100 })
    book.acknowledge(sent[0]!.id, 'resident:r1', 'r1')
    tick(30)
    expect(webhooks).toEqual([])
  })

  it('raises a no-data alert on its own timer when a resident\'s devices go silent, and clears it when data returns', () => {
    const { sent, feed, tick } = setup([SILENT])
    feed(0, { hr: 70 })
    tick(59)
    expect(sent).toEqual([])
    tick(60)
    expect(sent.map((a) => [a.ruleKey, a.state])).toEqual([['rs/silent', 'open']])
    expect(sent[0]!.message).toMatch(/no reading from your devices for 1 h/)
    feed(61, { hr: 70 })
    expect(sent.map((a) => a.state)).toEqual(['open', 'resolved'])
  })

  it('writes messages in the resident\'s language', () => {
    const { sent, feed } = setup([CRISIS], { language: 'zh-CN' })
    feed(0, { sys: 190, dia: 100 })
    expect(sent[0]!.language).toBe('zh-CN')
    expect(sent[0]!.message).toMatch(/血压 190\/100 mmHg.*5 分钟后再测一次.*急诊/)
    expect(sent[0]!.messages.en).toMatch(/seek emergency care/)
  })

  it('raises the severity of an open classification alert when it gets worse', () => {
    const { sent, feed } = setup([{ id: 'bp', title: 'BP', kind: 'classification', categories: [{ id: 'n' }, { id: 's2', sys: { op: '>=', value: 140 } }, { id: 'cr', sys: { op: '>', value: 180 } }], alertOn: { s2: 'warning', cr: 'critical' } }])
    feed(0, { sys: 150, dia: 80 })
    feed(1, { sys: 155, dia: 80 })
    feed(2, { sys: 190, dia: 80 })
    expect(sent.map((a) => [a.severity, a.state])).toEqual([['warning', 'open'], ['critical', 'open']])
    expect(sent[0]!.id).toBe(sent[1]!.id)
  })

  it('keeps sustained windows, open alerts and cool-downs across a restart, and re-sends no delivered alert', () => {
    const db = openDatabase(':memory:')
    const clock = new ManualClock(T0)
    const a = setup([HR_HIGH, CRISIS], { db, clock })
    for (let m = 0; m <= 6; m++) a.feed(m, { hr: 130 }) // 6 of the 10 minutes
    a.feed(7, { sys: 190, dia: 100 })
    expect(a.sent.map((x) => x.ruleKey)).toEqual(['rs/crisis'])
    const b = setup([HR_HIGH, CRISIS], { db, clock })
    expect(b.book.resendUndelivered()).toBe(0)
    expect(b.book.activeAlerts().map((x) => x.ruleKey)).toEqual(['rs/crisis'])
    for (let m = 8; m <= 10; m++) b.feed(m, { hr: 130 }) // the window started before the restart
    expect(b.sent.map((x) => x.ruleKey)).toEqual(['rs/hr-high'])
    b.feed(11, { sys: 120, dia: 80, hr: 100 })
    for (let m = 12; m <= 14; m++) b.feed(m, { hr: 100 })
    expect(b.sent.map((x) => [x.ruleKey, x.state])).toEqual([['rs/hr-high', 'open'], ['rs/crisis', 'resolved'], ['rs/hr-high', 'resolved']])
    const c = setup([HR_HIGH, CRISIS], { db, clock })
    for (let m = 15; m <= 26; m++) c.feed(m, { hr: 130 }) // cool-down (15 min from minute 13) still holds after a restart
    expect(c.sent).toEqual([])
  })

  it('re-sends after a restart an alert whose delivery a crash interrupted', () => {
    const db = openDatabase(':memory:')
    const a = setup([CRISIS], { db })
    a.book.setNotifier({ alert: () => {}, status: () => {} }) // the broker never confirmed
    a.feed(0, { sys: 190, dia: 100 })
    const b = setup([CRISIS], { db })
    expect(b.book.resendUndelivered()).toBe(1)
    expect(b.sent.map((x) => x.ruleKey)).toEqual(['rs/crisis'])
  })

  it('applies a personal override from the hospital', () => {
    const { sent, feed } = setup([CRISIS], { overrides: new Map([['rs/crisis', { value: 160 }]]) })
    feed(0, { sys: 170, dia: 90 })
    expect(sent.length).toBe(1)
  })

  it('publishes a per-resident status with the active alerts', () => {
    const { status, feed } = setup([CRISIS])
    feed(0, { sys: 190, dia: 100 })
    expect(status.at(-1)).toMatchObject({ residentId: 'r1', worst: 'critical', active: [{ ruleKey: 'rs/crisis', state: 'open' }] })
    feed(1, { sys: 120, dia: 80 })
    expect(status.at(-1)).toMatchObject({ worst: null, active: [] })
  })
})
