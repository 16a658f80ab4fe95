import { describe, expect, it } from 'vitest'
import { expire, onVerdict, type Policy, type RuleLife } from '../lifecycle.ts'

const T0 = Date.UTC(2026, 11, 2, 8)
const reading = (ts: number, holds: boolean) => ({ ts, trigger: holds, holds, severity: 'warning' as const, age: 'live' as const, firstClearAfter: () => null })

/** A rule that opens on one reading and clears on the next (hold-down 0), `times` times, 10 s apart; the effects' kinds in order. */
function comesAndGoes (p: Policy, times: number): { kinds: string[], life: RuleLife } {
  let life: RuleLife = {}
  const kinds: string[] = []
  const step = (out: { life: RuleLife, effect: { kind: string } }): void => { life = out.life; if (out.effect.kind !== 'none') kinds.push(out.effect.kind) }
  for (let i = 0; i < times; i++) {
    const t = T0 + i * 10_000
    step(onVerdict(life, reading(t, true), p))
    step(onVerdict(life, reading(t + 1000, false), p))
    step(expire(life, t + 2000, p))
  }
  return { kinds, life }
}

describe('flap detection (pure lifecycle)', () => {
  const base = { holdDownMs: 0, cooldownMs: 0, flapWindowMs: 3600_000 }

  it('holds a rule open as flapping once it opened flapCount times within the window', () => {
    const { kinds } = comesAndGoes({ ...base, flapCount: 3 }, 5)
    // the third opening is flapping: it is held open through the window, each return counted
    expect(kinds.slice(0, 5)).toEqual(['open', 'resolve', 'open', 'resolve', 'open'])
    expect(kinds.slice(5)).not.toContain('open')
    expect(kinds.slice(5)).not.toContain('resolve')
    expect(kinds.filter((k) => k === 'flapping')).toHaveLength(2)
  })

  it('is off with a count of 0: every opening is announced and no opening time is kept', () => {
    const { kinds, life } = comesAndGoes({ ...base, flapCount: 0 }, 200)
    expect(kinds.filter((k) => k === 'open')).toHaveLength(200)
    expect(kinds.filter((k) => k === 'resolve')).toHaveLength(200)
    expect(life.opens).toBeUndefined()
  })
})
