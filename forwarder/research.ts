import { createHmac } from 'node:crypto'
import type { ClosedWindow } from './aggregator.ts'
import { emptyStats, mergeStats, summarize, type StatsSummary } from './stats.ts'

/** A keyed pseudonym: the same resident gets different pseudonyms at different institutions, so they cannot link their data. */
export function pseudonym (institutionKey: string, residentId: string): string {
  return createHmac('sha256', institutionKey).update(residentId).digest('base64url').slice(0, 22)
}

export function ageBand (birthYear: number | null, at: number): string {
  if (birthYear === null) return 'unknown'
  const age = new Date(at).getUTCFullYear() - birthYear
  if (age < 18) return '0-17'
  if (age >= 80) return '80+'
  if (age < 30) return '18-29'
  const lo = Math.floor(age / 10) * 10
  return `${lo}-${lo + 9}`
}

export interface ResearchCell {
  region: string
  ageBand: string
  residents: number
  pseudonyms: string[]
  hr: StatsSummary
  sys: StatsSummary
  dia: StatsSummary
  bpCategories: Record<string, number>
}

/** The JSON pushed to (and pulled by) research institutions: docs/research-aggregate.md. */
export interface ResearchPayload {
  schema: 'vitalmesh.research-aggregate/1'
  institution: string
  /** `timeZone`: the zone whose local days a daily window follows */
  window: { kind: string, start: string, end: string, timeZone: string }
  version: number
  k: number
  cells: ResearchCell[]
  suppressedCells: number
}

/**
 * De-identified aggregates for one institution: only residents who consented to research
 * use, grouped by county and 10-year age band; no device or resident id, only keyed
 * pseudonyms; a cell covering fewer than k residents is left out (and counted).
 */
export function researchPayload (w: ClosedWindow, institution: { id: string, pseudonymKey: string }, k: number): ResearchPayload {
  const cells = new Map<string, { region: string, ageBand: string, ids: string[], hr: ReturnType<typeof emptyStats>, sys: ReturnType<typeof emptyStats>, dia: ReturnType<typeof emptyStats>, cats: Record<string, number> }>()
  for (const a of w.all) {
    const f = w.facts(a.residentId)
    if (!f?.researchConsent) continue
    const region = f.region ?? 'unknown'
    const band = ageBand(f.birthYear, w.start)
    const key = `${region}|${band}`
    let c = cells.get(key)
    if (!c) { c = { region, ageBand: band, ids: [], hr: emptyStats(), sys: emptyStats(), dia: emptyStats(), cats: {} }; cells.set(key, c) }
    c.ids.push(a.residentId)
    mergeStats(c.hr, a.hr); mergeStats(c.sys, a.sys); mergeStats(c.dia, a.dia)
    for (const [cat, n] of Object.entries(a.cats)) c.cats[cat] = (c.cats[cat] ?? 0) + n
  }
  const out: ResearchCell[] = []
  let suppressed = 0
  for (const c of [...cells.values()].sort((x, y) => (x.region + x.ageBand).localeCompare(y.region + y.ageBand))) {
    if (c.ids.length < k) { suppressed++; continue }
    out.push({
      region: c.region, ageBand: c.ageBand, residents: c.ids.length,
      pseudonyms: c.ids.map((id) => pseudonym(institution.pseudonymKey, id)).sort(),
      hr: summarize(c.hr), sys: summarize(c.sys), dia: summarize(c.dia), bpCategories: c.cats,
    })
  }
  return {
    schema: 'vitalmesh.research-aggregate/1', institution: institution.id,
    window: { kind: w.kind, start: new Date(w.start).toISOString(), end: new Date(w.end).toISOString(), timeZone: w.timeZone },
    version: w.version, k, cells: out, suppressedCells: suppressed,
  }
}
