import { createHmac } from 'node:crypto'
import type { ClosedWindow, ResidentFacts } from './aggregator.ts'
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

/** A finished clinical report as research aggregates count it (reports/book.ts `finishedOutcomes`). */
export interface ReportOutcomeInput {
  residentId: string
  kind: 'home-bp' | 'abpm-24h'
  guideline: string
  start: number
  end: number
  /** home-BP: `hypertension` / `below-threshold`; 24-hour profile: a dipping class; either: `insufficient-data` */
  category: string
}

export interface DippingCell { region: string, ageBand: string, residents: number, pseudonyms: string[], classes: Record<string, number> }
export interface HomeBpCell { region: string, ageBand: string, residents: number, pseudonyms: string[], byGuideline: Record<string, Record<string, number>> }

/** Report-level aggregates for research institutions: docs/research-aggregate.md, `vitalmesh.research-report-aggregate/1`. */
export interface ResearchReportPayload {
  schema: 'vitalmesh.research-report-aggregate/1'
  institution: string
  period: { from: string, to: string }
  k: number
  /** 24-hour profiles: residents per dipping class */
  dipping: { cells: DippingCell[], suppressedCells: number }
  /** home-BP protocols: residents per guideline and outcome (hypertension confirmed by the protocol or not) */
  homeBp: { cells: HomeBpCell[], suppressedCells: number }
  provenance: Record<string, string>
}

/**
 * Distributions of report outcomes per county and age band, with the rules of the window
 * aggregates above: only residents who consented to research use, only keyed pseudonyms,
 * a cell of fewer than k residents left out (and counted). A resident counts once per kind:
 * with their latest report of that kind that ended in the period (a repeated protocol is a
 * follow-up of the same person, not another person), in the age band of its start.
 */
export function researchReportPayload (outcomes: readonly ReportOutcomeInput[], facts: (residentId: string) => ResidentFacts | undefined, institution: { id: string, pseudonymKey: string }, k: number, period: { from: number, to: number }): ResearchReportPayload {
  const latest = new Map<string, ReportOutcomeInput>()
  for (const o of outcomes) {
    if (o.end < period.from || o.end >= period.to) continue
    const key = `${o.kind}|${o.residentId}`
    const had = latest.get(key)
    if (!had || o.end > had.end || (o.end === had.end && o.start > had.start)) latest.set(key, o)
  }
  type Acc = { region: string, ageBand: string, ids: string[], counts: Record<string, Record<string, number>> }
  const groups = { 'abpm-24h': new Map<string, Acc>(), 'home-bp': new Map<string, Acc>() }
  for (const o of latest.values()) {
    const f = facts(o.residentId)
    if (!f?.researchConsent) continue
    const region = f.region ?? 'unknown'
    const band = ageBand(f.birthYear, o.start)
    const cells = groups[o.kind]
    let c = cells.get(`${region}|${band}`)
    if (!c) { c = { region, ageBand: band, ids: [], counts: {} }; cells.set(`${region}|${band}`, c) }
    c.ids.push(o.residentId)
    // dipping classes do not depend on the guideline (only the day/night thresholds do): one distribution
    const g = o.kind === 'home-bp' ? o.guideline : '*'
    const byCat = c.counts[g] ??= {}
    byCat[o.category] = (byCat[o.category] ?? 0) + 1
  }
  const publish = <T>(cells: Map<string, Acc>, cell: (c: Acc, pseudonyms: string[]) => T): { cells: T[], suppressedCells: number } => {
    const out: T[] = []
    let suppressed = 0
    for (const c of [...cells.values()].sort((x, y) => (x.region + x.ageBand).localeCompare(y.region + y.ageBand))) {
      if (c.ids.length < k) { suppressed++; continue }
      out.push(cell(c, c.ids.map((id) => pseudonym(institution.pseudonymKey, id)).sort()))
    }
    return { cells: out, suppressedCells: suppressed }
  }
  return {
    schema: 'vitalmesh.research-report-aggregate/1', institution: institution.id,
    period: { from: new Date(period.from).toISOString(), to: new Date(period.to).toISOString() }, k,
    dipping: publish(groups['abpm-24h'], (c, pseudonyms) => ({ region: c.region, ageBand: c.ageBand, residents: c.ids.length, pseudonyms, classes: c.counts['*'] ?? {} })),
    homeBp: publish(groups['home-bp'], (c, pseudonyms) => ({ region: c.region, ageBand: c.ageBand, residents: c.ids.length, pseudonyms, byGuideline: c.counts })),
    provenance: {
      homeBp: "hypertension: the protocol's mean SBP or DBP at or above the home threshold of the run's guideline (ESH 2023, China 2018: 135/85; ACC/AHA: 130/80; ../shared/reference/clinical-thresholds.md); insufficient-data: fewer valid readings than the protocol requires",
      dipping: 'night-time dip (day - night) / day x 100 on SBP: >= 20 extreme dipper, 10-20 dipper, 0-10 non-dipper, < 0 reverse dipper (project heuristic: not in the reference file); insufficient-data: fewer daytime or night-time readings than the protocol requires',
      counting: 'each resident once per report kind, with the latest report of that kind that ended in the period; only readings of validated cuff models are averaged',
    },
  }
}
