import { describe, expect, it } from 'vitest'
import { openDatabase, ManualClock, silentLogger } from '../../core/index.ts'
import { AlertBook, RuleSetDocSchema, type Alert, type AlertHandover, type RuleSetDoc } from '../index.ts'

/**
 * Cluster mode moves a resident to another node when its partition moves. The node that takes
 * it over adopts its active alerts as the cluster's copy has them (AlertBook.adopt) and
 * rebuilds its timeline from the reading log (AlertBook.warm); the node that lost it stops
 * acting on it (`owns`). These are the pieces, on two AlertBooks of one process.
 */
const T0 = Date.UTC(2026, 10, 1, 8)
const MIN = 60_000
const ruleSet = (rules: unknown[]): RuleSetDoc => RuleSetDocSchema.parse({ id: 'rs', version: '1.0.0', publisher: 'p', citation: 'c', effectiveDate: '2026-01-01', audience: { kind: 'all' }, rules })
const HR_HIGH = { id: 'hr-high', title: 'High heart rate', kind: 'sustained', severity: 'warning', when: [{ metric: 'hr', op: '>', value: 120 }], forS: 600, maxGapS: 300, clear: { hysteresis: 5, holdDownS: 120 }, cooldownS: 900 }
const CRISIS = { id: 'crisis', title: 'Crisis', kind: 'threshold', severity: 'critical', when: [{ metric: 'sys', op: '>', value: 180 }] }

function node (clock: ManualClock, judges: Set<string>) {
  const sent: Alert[] = []
  const book = new AlertBook({
    db: openDatabase(':memory:'), clock, logger: silentLogger(),
    activeRuleSets: () => [ruleSet([HR_HIGH, CRISIS])],
    resident: (id) => ({ id, birthYear: 1960, conditions: [], region: 'c1', language: 'en', hospitalId: null }),
    overrides: () => new Map(), hospitalEndpoint: () => undefined, enqueueWebhook: () => {},
    owns: (id) => judges.has(id),
    options: { tickMs: 1000, escalateAfterS: 900, deskAfterS: 300, followersAfterS: 120, renotifyS: { critical: 0, warning: 0, info: 0 }, checkpointMs: 0 },
  })
  book.setNotifier({ alert: (a, delivered) => { sent.push(structuredClone(a)); delivered() }, status: () => {} })
  return { book, sent }
}

let seq = 0
const at = (minute: number, v: { hr?: number, sys?: number, dia?: number }, residentId = 'r1') => ({ deviceId: 'd1', residentId, seq: seq++, ts: T0 + minute * MIN, ...v })

describe('a resident taken over by another node', () => {
  it('keeps its open critical: the new judge adopts it, escalates it from when it opened, and a new crisis reading opens no second one', () => {
    const clock = new ManualClock(T0)
    const onX = new Set(['r1'])
    const x = node(clock, onX)
    x.book.feed([at(0, { sys: 192, dia: 118 })])
    x.book.flushDelivered() // the broker took it
    const crisis = x.book.activeAlerts()[0]!
    expect(x.sent.map((a) => a.severity)).toEqual(['critical'])
    // what the cluster's copy holds of it: the alert and its hand-over state, shipped by x
    const handed: { alert: Alert, handover: AlertHandover }[] = [{ alert: x.book.get(crisis.id)!, handover: x.book.handover(crisis.id)! }]
    // x dies 1 minute later; y takes the partition over
    onX.delete('r1')
    clock.set(T0 + 2 * MIN)
    const y = node(clock, new Set(['r1']))
    y.book.adopt((id) => id === 'r1', handed)
    expect(y.book.activeAlerts().map((a) => a.id)).toEqual([crisis.id])
    // the duty desk 5 minutes after the alert opened, not after the takeover; x, no longer judging, does nothing
    clock.set(T0 + 5 * MIN + 1000)
    y.book.tick()
    x.book.tick()
    expect(y.book.get(crisis.id)!.deskAt).toBe(T0 + 5 * MIN + 1000)
    expect(x.book.get(crisis.id)!.deskAt).toBeNull()
    // another crisis reading: the same alert goes on
    y.book.feed([at(6, { sys: 196, dia: 120 })])
    expect(y.book.activeAlerts().map((a) => a.id)).toEqual([crisis.id])
    expect(y.sent).toEqual([])
  })

  it('counts an alert resolved on the node that died in the new judge\'s summaries, without telling the resident of it again', () => {
    const clock = new ManualClock(T0)
    const y = node(clock, new Set(['r1']))
    const x = node(clock, new Set(['r1']))
    x.book.feed([at(0, { sys: 192, dia: 118 })])
    const a = x.book.activeAlerts()[0]!
    const resolved = { ...x.book.get(a.id)!, state: 'resolved' as const, resolvedAt: T0 + 5 * MIN }
    y.book.adopt((id) => id === 'r1', [{ alert: resolved, handover: { lastNotifiedAt: null, escalateFrom: null, announceAt: null, deliveredAt: null } }])
    expect(y.book.openedBetween('r1', T0 - MIN, T0 + 10 * MIN)).toBe(1)
    expect(y.book.activeAlerts()).toEqual([])
    expect(y.sent).toEqual([])
  })

  it('sends again an adopted alert whose delivery the node that died had not confirmed', () => {
    const clock = new ManualClock(T0)
    const x = node(clock, new Set(['r1']))
    x.book.feed([at(0, { sys: 192, dia: 118 })])
    const crisis = x.book.activeAlerts()[0]!
    // x died before the broker took it
    const y = node(clock, new Set(['r1']))
    y.book.adopt((id) => id === 'r1', [{ alert: x.book.get(crisis.id)!, handover: x.book.handover(crisis.id)! }])
    expect(y.sent.map((a) => a.id)).toEqual([crisis.id])
  })

  it('sees a tachycardia that began on the node that died whole, from the readings of the log', () => {
    const clock = new ManualClock(T0 + 6 * MIN)
    const x = node(clock, new Set(['r1']))
    const before = [0, 2, 4, 6].map((m) => at(m, { hr: 132 }))
    x.book.feed(before)
    expect(x.sent).toEqual([]) // 6 minutes of 10
    clock.set(T0 + 11 * MIN)
    const rebuilt = node(clock, new Set(['r1']))
    rebuilt.book.warm(before)
    rebuilt.book.feed([at(8, { hr: 131 }), at(10, { hr: 133 })])
    expect(rebuilt.sent.map((a) => [a.ruleKey, a.state])).toEqual([['rs/hr-high', 'open']])
    // without the readings before the takeover, the four minutes after it are not enough
    const blind = node(clock, new Set(['r1']))
    blind.book.feed([at(8, { hr: 131 }), at(10, { hr: 133 })])
    expect(blind.sent).toEqual([])
  })

  it('drops what it held of the resident from an earlier time: an alert the other node resolved meanwhile is resolved here too', () => {
    const clock = new ManualClock(T0)
    const y = node(clock, new Set(['r1']))
    y.book.feed([at(0, { sys: 192, dia: 118 })])
    const stale = y.book.activeAlerts()[0]!
    // the resident went to x, which resolved the alert; now it comes back to y
    const resolved = { ...y.book.get(stale.id)!, state: 'resolved' as const, resolvedAt: T0 + 10 * MIN }
    clock.set(T0 + 20 * MIN)
    y.book.adopt((id) => id === 'r1', [{ alert: resolved, handover: { lastNotifiedAt: T0, escalateFrom: T0, announceAt: null, deliveredAt: T0 } }])
    expect(y.book.activeAlerts()).toEqual([])
    expect(y.book.get(stale.id)!.state).toBe('resolved')
    // a new crisis is a new alert, not a continuation of the stale one
    y.book.feed([at(21, { sys: 190, dia: 110 })])
    expect(y.book.activeAlerts().map((a) => a.id)).not.toContain(stale.id)
    expect(y.book.activeAlerts().length).toBe(1)
  })
})
