import { measure, type Person } from './model.ts'

/** What a resident does during a home-BP week: when they sit down to measure, and how reliably. */
export interface HomeBpBehaviour {
  /** the resident's IANA time zone */
  timeZone: string
  /** local days of the protocol, `YYYY-MM-DD`, in order */
  dates: string[]
  /** local minutes of the morning and evening sittings (jittered by up to ±20 min) */
  morning: number
  evening: number
  /** readings per sitting, about a minute apart */
  perSitting: number
  /** chance a sitting is skipped */
  missRate: number
  /** chance a sitting is taken with the smartwatch instead of the cuff (cuffless: does not count) */
  watchRate: number
}

export interface SimHomeReading { ts: number, sys: number, dia: number, hr: number, device: 'cuff' | 'watch' }

/**
 * A resident's home-BP week as the cuff (and, sometimes, a smartwatch) would publish it: two
 * sittings a day at about the same local times, a reading a minute apart, some sittings
 * missed. `at(date, minute)` maps local wall time to an instant (reports' zonedTime).
 */
export function homeBpWeek (p: Person, b: HomeBpBehaviour, rand: () => number, at: (date: string, minute: number) => number): SimHomeReading[] {
  const out: SimHomeReading[] = []
  let n = 0
  for (const date of b.dates) {
    for (const minute of [b.morning, b.evening]) {
      if (rand() < b.missRate) continue
      const device = rand() < b.watchRate ? 'watch' : 'cuff'
      const t0 = at(date, minute + Math.round((rand() - 0.5) * 40))
      for (let k = 0; k < b.perSitting; k++) {
        const ts = t0 + k * 60_000 + Math.round(rand() * 10_000)
        const m = measure(p, ts, rand, n++)
        // sitting at rest: no exertion; the first reading of a sitting tends to be higher
        out.push({ ts, sys: Math.round(p.restSys + (k === 0 ? 4 : 0) + (m.sys - p.restSys) * 0.3), dia: Math.round(p.restDia + (m.dia - p.restDia) * 0.3), hr: m.hr, device })
      }
    }
  }
  return out
}
