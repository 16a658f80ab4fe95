import { describe, expect, it } from 'vitest'
import { openDatabase, ManualClock, silentLogger } from '../../core/index.ts'
import { AlertBook, defaultRuleSet, type Alert } from '../index.ts'

const r = (seq: number, v: { hr?: number, sys?: number, dia?: number }, residentId = 'r1') => ({ deviceId: 'd1', residentId, seq, ts: seq * 1000, ...v })

describe('alert lifecycle', () => {
  function book (db = openDatabase(':memory:')) {
    const sent: Alert[] = []
    const b = new AlertBook(db, defaultRuleSet, new ManualClock(1000), silentLogger(), (a, delivered) => { sent.push(a); delivered() })
    const feed = (rows: ReturnType<typeof r>[]) => b.commit(db.transaction(() => b.prepare(rows))())
    return { b, sent, feed, db }
  }

  it('opens one alert per resident and rule, however many readings keep it active, and resolves it once', () => {
    const { b, sent, feed } = book()
    feed([r(1, { hr: 130 }), r(2, { hr: 135 })])
    feed([r(3, { hr: 140 })])
    expect(sent.map((a) => [a.ruleId, a.state])).toEqual([['hr.high', 'open']])
    feed([r(4, { hr: 130 }, 'r2')])
    expect(sent.length).toBe(2)
    feed([r(5, { hr: 80 })])
    expect(sent.map((a) => [a.residentId, a.ruleId, a.state])).toEqual([['r1', 'hr.high', 'open'], ['r2', 'hr.high', 'open'], ['r1', 'hr.high', 'resolved']])
    expect(b.activeAlerts().map((a) => a.residentId)).toEqual(['r2'])
    expect(sent[0]!.message).toMatch(/heart rate 130 bpm/)
  })

  it('keeps open alerts across a restart and re-sends only undelivered ones', () => {
    const db = openDatabase(':memory:')
    const sent: Alert[] = []
    const b1 = new AlertBook(db, defaultRuleSet, new ManualClock(0), silentLogger(), (a) => sent.push(a)) // never confirms delivery
    b1.commit(db.transaction(() => b1.prepare([r(1, { sys: 200, dia: 100 })]))())
    const { b: b2, sent: sent2, feed } = book(db)
    expect(b2.activeAlerts().map((a) => a.ruleId)).toEqual(['bp.crisis'])
    expect(b2.resendUndelivered()).toBe(1)
    b2.flushDelivered()
    feed([r(2, { sys: 210, dia: 100 })]) // still in crisis: no second alert
    expect(sent2.map((a) => a.ruleId)).toEqual(['bp.crisis'])
    const { b: b3 } = book(db)
    expect(b3.resendUndelivered()).toBe(0)
  })

  it('leaves no trace when the transaction rolls back', () => {
    const { b, sent, db } = book()
    expect(() => db.transaction(() => { b.prepare([r(1, { hr: 150 })]); throw new Error('disk full') })()).toThrow()
    expect(b.activeAlerts()).toEqual([])
    expect(b.forResident('r1')).toEqual([])
    expect(sent).toEqual([])
  })
})
