import { nameUuid, RESIDENT_SYSTEM, transactionBundle, type FhirEntry } from '../forwarder/index.ts'
import type { HomeBpResult } from './home-bp.ts'
import type { PeriodResult, ProfileResult } from './profile.ts'
import type { ReportProtocol } from './protocol.ts'
import { CLASS_TEXT, type ModelUse, type ReadingRef } from './reading.ts'

/**
 * FHIR R4 for finished clinical reports: one DiagnosticReport per protocol run with its
 * result Observations, in a transaction Bundle. Every resource has a stable identifier and
 * is created conditionally (ifNoneExist), so a re-sent Bundle creates nothing; an amended
 * report (a late reading changed it) is status `amended` and updates conditionally (PUT).
 *
 * The report (DiagnosticReport and its results, at most 6 entries) is one transaction; the
 * readings it averages travel in Bundles of their own, at most `maxEntries` each, and the
 * summaries refer to them by identifier (a logical reference), so neither needs the other
 * to arrive first. Medplum, for one, refuses a transaction with conditional creates or
 * updates beyond 8 entries (fhir-router batch.ts, maxSerializableTransactionEntries).
 *
 * Codes: LOINC 85354-9 (BP panel, components 8480-6 and 8462-4) and UCUM mm[Hg] as in
 * reference §4. The reference lists no LOINC code for a mean, a dip or adherence: the
 * statistic is stated in `method`, and such Observations carry a vitalmesh code (system
 * below) rather than a LOINC code nobody checked.
 */
export const REPORT_SYSTEM = 'urn:vitalmesh:report'
export const READING_SYSTEM = 'urn:vitalmesh:reading'
export const VITALMESH_CODES = 'urn:vitalmesh:code'
const PROTOCOL_TAG = 'urn:vitalmesh:protocol'
const VALIDATION_TAG = 'urn:vitalmesh:device-validation'
const LOINC = 'http://loinc.org'
const UCUM = 'http://unitsofmeasure.org'
const VITAL_SIGNS = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs', display: 'Vital Signs' }] }
const BP_PANEL = { system: LOINC, code: '85354-9', display: 'Blood pressure panel with all children optional' }
const mmHg = (value: number) => ({ value, unit: 'mmHg', system: UCUM, code: 'mm[Hg]' })
const iso = (t: number): string => new Date(t).toISOString()
const bilingual = (k: string): string => { const t = CLASS_TEXT[k]; return t ? `${t.en} / ${t['zh-CN']}` : k }

export interface FinishedReport {
  runId: string
  residentId: string
  /** 1 when first finished; each amendment adds one */
  version: number
  issuedAt: number
  protocol: ReportProtocol
  result: HomeBpResult | ProfileResult
  /** the version this one amends: its readings were sent with it and are not sent again */
  previous?: HomeBpResult | ProfileResult
}

/** The readings a result averages. */
export function averagedReadings (r: HomeBpResult | ProfileResult): ReadingRef[] {
  return r.kind === 'home-bp' ? r.averaged : [...r.daytime.readings, ...r.nighttime.readings]
}

export interface ReportBundleOptions {
  /** this node's id, part of every identifier */
  node: string
  /** send each averaged reading as an Observation too, so a clinician can see what a mean was derived from */
  readings: boolean
  /** entries per readings Bundle (default 8, Medplum's limit for conditional transactions) */
  maxEntries?: number
}

export interface ReportEntries { report: FhirEntry[], readings: FhirEntry[] }

export function reportIdentifier (node: string, r: Pick<FinishedReport, 'residentId' | 'runId'>): string {
  return `${node}/${r.residentId}/report/${r.runId}`
}

/** The entries of one finished report: its results and the DiagnosticReport last; the readings apart. */
export function reportEntries (r: FinishedReport, o: ReportBundleOptions): ReportEntries {
  const res = r.result
  const base = reportIdentifier(o.node, r)
  const amended = r.version > 1
  const status = amended ? 'amended' : 'final'
  const subject = { reference: `Patient?identifier=${RESIDENT_SYSTEM}|${r.residentId}`, identifier: { system: RESIDENT_SYSTEM, value: r.residentId } }
  const period = { start: iso(res.period.start), end: iso(res.period.end) }
  const protocolTag = { system: PROTOCOL_TAG, code: `${res.protocol.id}@${res.protocol.version}`, display: r.protocol.title.en }
  const modelTags = res.deviceModels.map((m) => ({ system: VALIDATION_TAG, code: m.validation, display: m.model ?? 'unregistered model' }))
  const meta = { tag: [protocolTag, ...modelTags] }
  const models = describeModels(res.deviceModels)
  const entries: FhirEntry[] = []
  const readingEntries: FhirEntry[] = []
  const entry = (system: string, value: string, resourceType: string, body: Record<string, unknown>, update: boolean, into = entries): string => {
    const fullUrl = `urn:uuid:${nameUuid(`${system}|${value}`)}`
    const condition = `identifier=${encodeURIComponent(system)}|${encodeURIComponent(value)}`
    into.push({
      fullUrl,
      resource: { resourceType, identifier: [{ system, value }], ...body },
      request: update ? { method: 'PUT', url: `${resourceType}?${condition}` } : { method: 'POST', url: resourceType, ifNoneExist: condition },
    })
    return fullUrl
  }
  // a reading never changes, so it is only ever created (once, whichever report sends it first)
  const readingKey = (x: ReadingRef): string => `${o.node}/${r.residentId}/${x.deviceId}/${x.ts}`
  const sent = new Set<string>(r.previous ? averagedReadings(r.previous).map(readingKey) : [])
  const readingsOf = (rs: readonly ReadingRef[]): Ref[] | undefined => {
    if (!o.readings || !rs.length) return undefined
    return rs.map((x) => {
      const value = readingKey(x)
      if (!sent.has(value)) {
        sent.add(value)
        entry(READING_SYSTEM, value, 'Observation', {
          meta: { tag: [{ system: VALIDATION_TAG, code: 'validated', display: x.deviceModel ?? 'unregistered model' }] },
          status: 'final', category: [VITAL_SIGNS], code: { coding: [BP_PANEL], text: 'Blood pressure' }, subject,
          effectiveDateTime: iso(x.ts),
          device: { display: `${x.deviceModel ?? 'unregistered model'} (validated cuff), device ${x.deviceId}` },
          component: bpComponents(x),
        }, false, readingEntries)
      }
      return { type: 'Observation', identifier: { system: READING_SYSTEM, value } }
    })
  }
  const note = (text: string) => [{ text }, { text: models }, { text: `protocol ${res.protocol.id} ${res.protocol.version}, report version ${r.version}` }]
  const panel = (key: string, title: string, p: { mean: { sys: number, dia: number }, n: number, readings: readonly ReadingRef[] }, provenance: string, derivedFrom?: Ref[]): string =>
    entry(REPORT_SYSTEM, `${base}/${key}`, 'Observation', {
      meta, status, category: [VITAL_SIGNS],
      code: { coding: [BP_PANEL, { system: VITALMESH_CODES, code: key, display: title }], text: title },
      subject, effectivePeriod: period,
      method: { text: `mean of ${p.n} readings (SBP and DBP of the same readings), ${r.protocol.title.en} ${res.protocol.version}` },
      component: bpComponents(p.mean),
      ...(derivedFrom?.length ? { derivedFrom } : {}),
      note: note(provenance),
    }, amended)
  const results: string[] = []
  const conclusion: string[] = []
  const conclusionCode: { coding: { system: string, code: string, display: string }[], text: string }[] = []
  const classCode = (c: string, where: string) => conclusionCode.push({ coding: [{ system: VITALMESH_CODES, code: c, display: CLASS_TEXT[c]?.en ?? c }], text: `${where}: ${bilingual(c)}` })

  if (res.kind === 'home-bp') {
    const c = res.counts
    results.push(entry(REPORT_SYSTEM, `${base}/adherence`, 'Observation', {
      meta, status, code: { coding: [{ system: VITALMESH_CODES, code: 'home-bp-adherence', display: 'Home BP protocol adherence' }], text: 'Home BP protocol adherence / 家庭血压监测依从性' },
      subject, effectivePeriod: period,
      component: [
        ['sessions-scheduled', res.adherence.scheduled], ['sessions-done', res.adherence.done], ['sessions-partial', res.adherence.partial], ['sessions-missed', res.adherence.missed],
        ['readings-averaged', c.averaged], ['readings-first-day', c.firstDay], ['readings-outside-sessions', c.outsideSessions + c.beyondSession],
        ['readings-excluded-cuffless', c.excluded.cuffless], ['readings-excluded-unvalidated', c.excluded.unvalidated + c.excluded.unknown], ['readings-incomplete', c.excluded.incomplete],
      ].map(([code, n]) => ({ code: { coding: [{ system: VITALMESH_CODES, code: code as string }], text: code as string }, valueInteger: n as number })),
      note: note(`${res.provenance.sessions}; ${res.provenance.discardFirstDay}`),
    }, amended))
    if (res.outcome.status === 'complete') {
      results.push(panel('home-bp-mean', 'Home blood pressure, mean', { mean: res.outcome.mean, n: res.outcome.n, readings: res.averaged }, res.provenance.threshold!, readingsOf(res.averaged)))
      classCode(res.outcome.classification, 'home BP')
      conclusion.push(`Home BP mean ${res.outcome.mean.sys}/${res.outcome.mean.dia} mmHg of ${res.outcome.n} readings: ${bilingual(res.outcome.classification)} (home ${res.outcome.threshold.sys}/${res.outcome.threshold.dia}, ${res.guideline}).`)
    } else {
      classCode('insufficient-data', 'home BP')
      const o = res.outcome.status === 'insufficient-data' ? res.outcome : { n: c.averaged, required: r.protocol.kind === 'home-bp' ? r.protocol.minValidReadings : 0 }
      conclusion.push(`${bilingual('insufficient-data')}: ${o.n} valid readings, ${o.required} required.`)
    }
    conclusion.push(`Sessions done ${res.adherence.done} of ${res.adherence.scheduled}; ${c.excluded.cuffless + c.excluded.unvalidated + c.excluded.unknown} readings of cuffless or unvalidated devices not used.`)
  } else {
    const day = periodPanel(res.daytime); const night = periodPanel(res.nighttime); const h24 = periodPanel(res.h24)
    const d = day && panel('abpm-day-mean', 'Daytime blood pressure, mean', day, res.provenance.threshold!, readingsOf(res.daytime.readings))
    const n = night && panel('abpm-night-mean', 'Night-time blood pressure, mean', night, `${res.provenance.threshold}; ${res.provenance.sleepWindow}`, readingsOf(res.nighttime.readings))
    const both = d && n ? [{ reference: d }, { reference: n }] : undefined
    const h = h24 && panel('abpm-24h-mean', '24-hour blood pressure, mean', h24, res.provenance.threshold!, both)
    for (const x of [d, n, h]) if (x) results.push(x)
    for (const [p, where] of [[res.daytime, 'daytime'], [res.nighttime, 'night-time'], [res.h24, '24 h']] as const) {
      if (p.mean && p.classification) { classCode(p.classification, where); conclusion.push(`${where} mean ${p.mean.sys}/${p.mean.dia} mmHg (n=${p.n}): ${bilingual(p.classification)} (≥${p.threshold.sys}/${p.threshold.dia}).`) } else conclusion.push(`${where}: ${bilingual('insufficient-data')} (n=${p.n}, ${p.required} required).`)
    }
    if (res.dip && both) {
      results.push(entry(REPORT_SYSTEM, `${base}/dip`, 'Observation', {
        meta, status, code: { coding: [{ system: VITALMESH_CODES, code: 'sbp-nocturnal-dip', display: 'Night-time SBP dip' }], text: 'Night-time systolic dip / 夜间收缩压下降率' },
        subject, effectivePeriod: period, valueQuantity: { value: res.dip.pct, unit: '%', system: UCUM, code: '%' },
        interpretation: [{ coding: [{ system: VITALMESH_CODES, code: res.dip.classification, display: CLASS_TEXT[res.dip.classification]!.en }], text: bilingual(res.dip.classification) }],
        method: { text: '(daytime mean SBP − night-time mean SBP) / daytime mean SBP × 100' },
        derivedFrom: both, note: note(res.provenance.dipping!),
      }, amended))
      classCode(res.dip.classification, 'dipping')
      conclusion.push(`Night-time dip ${res.dip.pct} %: ${bilingual(res.dip.classification)}.`)
    }
    if (res.morningSurge && both) {
      results.push(entry(REPORT_SYSTEM, `${base}/morning-surge`, 'Observation', {
        meta, status, code: { coding: [{ system: VITALMESH_CODES, code: 'sbp-morning-surge', display: 'Morning SBP surge (sleep-trough)' }], text: 'Morning systolic surge / 晨峰' },
        subject, effectivePeriod: period, valueQuantity: mmHg(res.morningSurge.sys),
        method: { text: `mean SBP ${res.morningSurge.morning} in the 2 h after waking at ${iso(res.morningSurge.wakeTs)} minus night-time trough ${res.morningSurge.trough}` },
        derivedFrom: both, note: note(res.provenance.morningSurge!),
      }, amended))
    }
  }
  entry(REPORT_SYSTEM, base, 'DiagnosticReport', {
    meta, status,
    code: { coding: [{ system: VITALMESH_CODES, code: res.kind === 'home-bp' ? 'home-bp-protocol' : 'abpm-24h-profile', display: r.protocol.title.en }], text: `${r.protocol.title.en} / ${r.protocol.title['zh-CN']}` },
    subject, effectivePeriod: period, issued: iso(r.issuedAt),
    result: results.map((reference) => ({ reference })),
    conclusion: [...conclusion, models, `Time zone ${res.timeZone}; guideline ${res.guideline}; protocol ${res.protocol.id} ${res.protocol.version}; report version ${r.version}.`].join(' '),
    ...(conclusionCode.length ? { conclusionCode } : {}),
  }, amended)
  return { report: entries, readings: readingEntries }
}

/**
 * The transaction Bundles of one finished report: readings first (each Bundle independent,
 * re-sendable), the report last. Bundle ids are stable per report version.
 */
export function reportBundles (r: FinishedReport, o: ReportBundleOptions): Record<string, unknown>[] {
  const { report, readings } = reportEntries(r, o)
  const id = `${o.node}-${r.residentId}-${r.runId}-v${r.version}`
  const max = o.maxEntries ?? 8
  const out: Record<string, unknown>[] = []
  for (let i = 0; i < readings.length; i += max) out.push(transactionBundle(readings.slice(i, i + max), `${id}-readings-${i / max}`, r.issuedAt))
  out.push(transactionBundle(report, id, r.issuedAt))
  return out
}

type Ref = { reference: string } | { type: string, identifier: { system: string, value: string } }

function bpComponents (x: { sys: number, dia: number }) {
  return [
    { code: { coding: [{ system: LOINC, code: '8480-6', display: 'Systolic blood pressure' }] }, valueQuantity: mmHg(x.sys) },
    { code: { coding: [{ system: LOINC, code: '8462-4', display: 'Diastolic blood pressure' }] }, valueQuantity: mmHg(x.dia) },
  ]
}

function periodPanel (p: PeriodResult): { mean: { sys: number, dia: number }, n: number, readings: readonly ReadingRef[] } | undefined {
  return p.mean ? { mean: p.mean, n: p.n, readings: p.readings } : undefined
}

function describeModels (ms: readonly ModelUse[]): string {
  if (!ms.length) return 'Devices: none.'
  return `Devices: ${ms.map((m) => `${m.model ?? 'unregistered model'} (${m.validation}${m.validation === 'validated' ? '' : ', not used'}): ${m.readings} readings`).join('; ')}.`
}
