/**
 * Feed volume: FHIR resources (and Bundles, bytes) per patient per day that a hospital
 * receives, for each feed kind, for 1,000 simulated residents over one simulated day.
 * Built with the real builders (forwarder summaryEntries and measurementSink, reports reportBundles) over the
 * firmware simulator's model of a person; nothing is sent.
 *
 *   npx tsx bench/feed-volume.ts [residents=1000] [wearableIntervalS=300]
 */
import { addValue, emptyStats, measurementSink, summarize, summaryEntries, type MeasuredReading, type ResidentSummary } from '../forwarder/index.ts'
import type { Clock } from '../core/index.ts'
import { makePerson, measure, prng } from '../firmware-sim/model.ts'
import { ABPM_24H, HOME_BP_7D, computeHomeBp, computeProfile, reportBundles, zonedTime, addDays, type ReportReading } from '../reports/index.ts'

const residents = Number(process.argv[2] ?? 1000)
const wearableS = Number(process.argv[3] ?? 300)
const TZ = 'Asia/Shanghai'
const DAY = '2025-06-02'
const dayStart = zonedTime(DAY, 0, TZ)
const rand = prng(15)

interface Tally { resources: number, bundles: number, bytes: number }
const tally = (): Tally => ({ resources: 0, bundles: 0, bytes: 0 })
const add = (t: Tally, bundles: Record<string, unknown>[]): void => {
  for (const b of bundles) { t.bundles++; t.resources += (b.entry as unknown[]).length; t.bytes += JSON.stringify(b).length }
}
const feeds = { summaries1h1d: tally(), summaries1h1dMedplum: tally(), perMeasurement: tally(), homeBp: tally(), homeBpNoReadings: tally(), profile24h: tally(), profile24hNoReadings: tally() }
// the measurements feed as the node sends it (forwarder measurementSink), in Bundles of 8 (Medplum)
const sendMeasurements = measurementSink({
  node: 'county-a', maxEntries: 8, clock: { now: () => dayStart } as Clock,
  hospitals: () => [{ id: 'h', fhirUrl: 'http://h.invalid/fhir', fhirAuth: 'bearer', fhirSecret: null, feeds: ['measurements'] }], hospitalOf: () => 'h',
  enqueue: (e) => { add(feeds.perMeasurement, [JSON.parse(e.body) as Record<string, unknown>]) }, audit: () => {},
})

/** summary entries per window (all residents in one hospital) */
const perWindow = new Map<string, number>()
const t0 = performance.now()
for (let i = 0; i < residents; i++) {
  const person = makePerson(rand, i % 10 === 0 ? 'hypertensive' : 'healthy')
  const id = `res-${String(i).padStart(5, '0')}`
  // the wearable: a reading every wearableS seconds all day, summarised in 1 h and 1 d windows
  const windows = new Map<string, { start: number, end: number, hr: ReturnType<typeof emptyStats>, sys: ReturnType<typeof emptyStats>, dia: ReturnType<typeof emptyStats> }>()
  let n = 0
  const measured: MeasuredReading[] = []
  for (let ts = dayStart; ts < dayStart + 86400_000; ts += wearableS * 1000, n++) {
    const r = measure(person, ts, rand, n)
    measured.push({ deviceId: `${id}-watch`, residentId: id, seq: n + 1, ts, hr: r.hr, sys: r.sys, dia: r.dia })
    for (const [kind, ms] of [['1h', 3600_000], ['1d', 86400_000]] as const) {
      const start = ts - ((ts - dayStart) % ms)
      const key = `${kind}/${start}`
      const w = windows.get(key) ?? { start, end: start + ms, hr: emptyStats(), sys: emptyStats(), dia: emptyStats() }
      addValue(w.hr, r.hr); addValue(w.sys, r.sys); addValue(w.dia, r.dia)
      windows.set(key, w)
    }
  }
  const entries = [...windows.entries()].flatMap(([key, w]) => {
    const s: ResidentSummary = { residentId: id, window: { kind: key.split('/')[0]!, start: w.start, end: w.end }, version: 1, hr: summarize(w.hr), sys: summarize(w.sys), dia: summarize(w.dia), bpCategories: {}, timeInRange: { bp: null, hr: null }, alerts: 0 }
    return summaryEntries(s, 'county-a')
  })
  // the hospital sink sends each closed window's entries of all its residents, in Bundles of fhirMaxEntries
  for (const e of entries) {
    const key = (e.resource.identifier as { value: string }[])[0]!.value.split('/').slice(2, 4).join('/')
    perWindow.set(key, (perWindow.get(key) ?? 0) + 1)
    const bytes = JSON.stringify(e).length
    for (const t of [feeds.summaries1h1d, feeds.summaries1h1dMedplum]) { t.resources++; t.bytes += bytes }
  }
  // every reading as an Observation (PHD IG style), with its Device in each Bundle
  sendMeasurements(measured)

  // a home-BP week: 7 days x 2 sessions x 2 readings from a validated cuff; per day = a seventh of the run's Bundles
  const home: ReportReading[] = []
  for (let d = 0; d < 7; d++) for (const m of [7 * 60, 20 * 60]) for (const k of [0, 1]) {
    const ts = zonedTime(addDays(DAY, d), m, TZ) + k * 60_000
    const r = measure(person, ts, rand, k)
    home.push({ ts, deviceId: `${id}-cuff`, sys: r.sys, dia: r.dia, deviceModel: 'cuff', validation: 'validated' })
  }
  const homeResult = computeHomeBp(HOME_BP_7D, { startTs: zonedTime(DAY, 0, TZ), timeZone: TZ, guideline: 'china-2018', now: zonedTime(addDays(DAY, 8), 0, TZ) }, home)
  const homeReport = { runId: `run-${i}`, residentId: id, version: 1, issuedAt: dayStart, protocol: HOME_BP_7D, result: homeResult }
  add(feeds.homeBp, reportBundles(homeReport, { node: 'county-a', readings: true }))
  add(feeds.homeBpNoReadings, reportBundles(homeReport, { node: 'county-a', readings: false }))

  // a 24-hour profile: a cuff every 20 min by day, every 30 min at night
  const abpm: ReportReading[] = []
  for (let ts = dayStart + 10 * 3600_000; ts < dayStart + 34 * 3600_000;) {
    const r = measure(person, ts, rand, 0)
    abpm.push({ ts, deviceId: `${id}-abpm`, sys: r.sys, dia: r.dia, activity: r.activity, deviceModel: 'abpm', validation: 'validated' })
    ts += (r.activity === 'sleep' ? 30 : 20) * 60_000
  }
  const profile = computeProfile(ABPM_24H, { startTs: dayStart + 10 * 3600_000, timeZone: TZ, guideline: 'china-2018', now: dayStart + 40 * 3600_000 }, abpm)
  const profileReport = { runId: `abpm-${i}`, residentId: id, version: 1, issuedAt: dayStart, protocol: ABPM_24H, result: profile }
  const withReadings = reportBundles(profileReport, { node: 'county-a', readings: true })
  add(feeds.profile24h, withReadings)
  add(feeds.profile24hNoReadings, reportBundles(profileReport, { node: 'county-a', readings: false }))
}
for (const [max, t] of [[100, feeds.summaries1h1d], [8, feeds.summaries1h1dMedplum]] as const) {
  for (const n of perWindow.values()) { t.bundles += Math.ceil(n / max); t.bytes += Math.ceil(n / max) * 120 }
}
const ms = performance.now() - t0

const perDay = (t: Tally, days = 1): [string, string, string] => [(t.resources / residents / days).toFixed(1), (t.bundles / residents / days).toFixed(2), (t.bytes / residents / days / 1024).toFixed(1)]
const rows: [string, Tally, number][] = [
  [`window summaries 1h+1d (wearable every ${wearableS} s), Bundles of 100 entries (default fhirMaxEntries), one hospital`, feeds.summaries1h1d, 1],
  ['window summaries 1h+1d, Bundles of 8 (Medplum)', feeds.summaries1h1dMedplum, 1],
  [`measurements: every reading as an Observation (BP panel + pulse, every ${wearableS} s) with its Device, Bundles of 8 (Medplum)`, feeds.perMeasurement, 1],
  ['home-BP week report, with its 24 readings (per day of the 7)', feeds.homeBp, 7],
  ['home-BP week report, without readings (per day of the 7)', feeds.homeBpNoReadings, 7],
  ['24-hour profile, with its readings', feeds.profile24h, 1],
  ['24-hour profile, without readings', feeds.profile24hNoReadings, 1],
]
console.log(`${residents} residents, one simulated day, built in ${Math.round(ms)} ms\n`)
console.log('| feed | resources / patient / day | Bundles / patient / day | KiB / patient / day |')
console.log('|---|---|---|---|')
for (const [name, t, days] of rows) console.log(`| ${name} | ${perDay(t, days).join(' | ')} |`)
