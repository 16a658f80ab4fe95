import { createHash } from 'node:crypto'
import type { ResidentSummary } from './aggregator.ts'
import type { StatsSummary } from './stats.ts'

export const SUMMARY_SYSTEM = 'urn:vitalmesh:summary'
export const RESIDENT_SYSTEM = 'urn:vitalmesh:resident'
const LOINC = 'http://loinc.org'
const UCUM = 'http://unitsofmeasure.org'
const CATEGORY = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs', display: 'Vital Signs' }] }
const STATISTICS = ['mean', 'min', 'max', 'p50', 'p95'] as const
type Statistic = typeof STATISTICS[number]
const STAT_TEXT: Record<Statistic, string> = { mean: 'mean', min: 'minimum', max: 'maximum', p50: 'median (50th percentile)', p95: '95th percentile' }

/** A UUID derived from a name, so a re-sent Bundle carries the same fullUrls. */
export function nameUuid (name: string): string {
  const h = createHash('sha256').update(name).digest('hex')
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${((parseInt(h.slice(16, 18), 16) & 0x3f) | 0x80).toString(16)}${h.slice(18, 20)}-${h.slice(20, 32)}`
}

function qty (value: number, unit: 'mm[Hg]' | '/min'): { value: number, unit: string, system: string, code: string } {
  return { value, unit: unit === '/min' ? 'beats/minute' : 'mmHg', system: UCUM, code: unit }
}

/** The extension on `Observation.code` that names the statistic a summary Observation carries (mean, min, max, p50, p95). */
export const STATISTIC_EXTENSION = 'urn:vitalmesh:fhir:StructureDefinition:summary-statistic'
function statisticOf (stat: Statistic): { extension: { url: string, valueCode: string }[] } {
  return { extension: [{ url: STATISTIC_EXTENSION, valueCode: stat }] }
}

export interface FhirEntry { fullUrl: string, resource: Record<string, unknown>, request: { method: 'POST' | 'PUT', url: string, ifNoneExist?: string } }

/**
 * FHIR R4 Observations (vital-signs profile) for one resident's window summary: per statistic
 * heart rate 8867-4, and systolic 8480-6 and diastolic 8462-4 each on its own, except the mean,
 * a BP panel 85354-9 (components 8480-6 and 8462-4: both means are over the same readings);
 * with an effectivePeriod, the statistic in `method` and in the extension STATISTIC_EXTENSION
 * on `code`. Each has a deterministic
 * identifier: the first send creates it conditionally (If-None-Exist), so a re-send never
 * duplicates; a corrected summary (a late reading) updates it conditionally (PUT).
 */
export function summaryEntries (s: ResidentSummary, node: string): FhirEntry[] {
  const out: FhirEntry[] = []
  const period = { start: new Date(s.window.start).toISOString(), end: new Date(s.window.end).toISOString() }
  const subject = { reference: `Patient?identifier=${RESIDENT_SYSTEM}|${s.residentId}`, identifier: { system: RESIDENT_SYSTEM, value: s.residentId } }
  const add = (metric: 'bp' | 'sys' | 'dia' | 'hr', stat: Statistic, body: Record<string, unknown>, count: number): void => {
    const value = `${node}/${s.residentId}/${s.window.kind}/${period.start}/${metric}/${stat}`
    const resource = {
      resourceType: 'Observation',
      identifier: [{ system: SUMMARY_SYSTEM, value }],
      status: s.version > 1 ? 'amended' : 'final',
      category: [CATEGORY],
      subject,
      effectivePeriod: period,
      method: { text: `${STAT_TEXT[stat]} of ${count} readings over ${s.window.kind}` },
      note: [{ text: `vitalmesh ${s.window.kind} summary, statistic: ${STAT_TEXT[stat]}, readings: ${count}, summary version ${s.version}` }],
      ...body,
    }
    const condition = `identifier=${encodeURIComponent(SUMMARY_SYSTEM)}|${encodeURIComponent(value)}`
    out.push({
      fullUrl: `urn:uuid:${nameUuid(value)}`,
      resource,
      request: s.version > 1 ? { method: 'PUT', url: `Observation?${condition}` } : { method: 'POST', url: 'Observation', ifNoneExist: condition },
    })
  }
  const v = (x: StatsSummary, stat: Statistic): number | null => x[stat]
  for (const stat of STATISTICS) {
    const sys = v(s.sys, stat); const dia = v(s.dia, stat)
    // the mean SBP and the mean DBP are averages over the same readings (a reading never has sys
    // without dia, core/reading.ts), so "mean x/y" is a blood pressure, as in home BP reports; a
    // minimum, maximum or percentile of SBP and of DBP come from different readings, so they are
    // sent apart (8480-6 and 8462-4), never as a panel that would read as one measurement
    if (stat === 'mean' && sys !== null && dia !== null && s.sys.count === s.dia.count) {
      add('bp', stat, {
        code: { ...statisticOf(stat), coding: [{ system: LOINC, code: '85354-9', display: 'Blood pressure panel with all children optional' }], text: `Blood pressure, ${STAT_TEXT[stat]}` },
        component: [
          { code: { coding: [{ system: LOINC, code: '8480-6', display: 'Systolic blood pressure' }] }, valueQuantity: qty(sys, 'mm[Hg]') },
          { code: { coding: [{ system: LOINC, code: '8462-4', display: 'Diastolic blood pressure' }] }, valueQuantity: qty(dia, 'mm[Hg]') },
        ],
      }, s.sys.count)
    } else {
      if (sys !== null) {
        add('sys', stat, {
          code: { ...statisticOf(stat), coding: [{ system: LOINC, code: '8480-6', display: 'Systolic blood pressure' }], text: `Systolic blood pressure, ${STAT_TEXT[stat]}` },
          valueQuantity: qty(sys, 'mm[Hg]'),
        }, s.sys.count)
      }
      if (dia !== null) {
        add('dia', stat, {
          code: { ...statisticOf(stat), coding: [{ system: LOINC, code: '8462-4', display: 'Diastolic blood pressure' }], text: `Diastolic blood pressure, ${STAT_TEXT[stat]}` },
          valueQuantity: qty(dia, 'mm[Hg]'),
        }, s.dia.count)
      }
    }
    const hr = v(s.hr, stat)
    if (hr !== null) {
      add('hr', stat, {
        code: { ...statisticOf(stat), coding: [{ system: LOINC, code: '8867-4', display: 'Heart rate' }], text: `Heart rate, ${STAT_TEXT[stat]}` },
        valueQuantity: qty(hr, '/min'),
      }, s.hr.count)
    }
  }
  return out
}

/** A transaction Bundle: the receiving server applies it atomically. */
export function transactionBundle (entries: FhirEntry[], id: string, timestamp: number): Record<string, unknown> {
  return { resourceType: 'Bundle', id, type: 'transaction', timestamp: new Date(timestamp).toISOString(), entry: entries }
}

export const ALERT_SYSTEM = 'urn:vitalmesh:alert'
export const READING_SYSTEM = 'urn:vitalmesh:reading'
export const DEVICE_SYSTEM = 'urn:vitalmesh:device'

/** What the alerts feed needs of a critical alert (alerting/store.ts Alert). */
export interface CriticalAlert {
  id: string, residentId: string, ruleKey: string, ruleSetVersion: string, severity: string, state: string
  openedAt: number, resolvedAt: number | null, escalatedAt: number | null, messages: { en: string }
  reading: { deviceId: string, seq: number, ts: number } | null
}

/**
 * A critical alert as a FHIR R4 Flag (category clinical) for the resident's hospital: active
 * while it is open, inactive with `period.end` once it ended; escalation (not acknowledged in
 * time) is a `meta.tag`. Identifier `urn:vitalmesh:alert|<node>/<alert id>`: created
 * conditionally when it becomes critical, later changes are conditional updates.
 */
export function alertFlagEntry (a: CriticalAlert, change: 'critical' | 'escalated' | 'ended', node: string): FhirEntry {
  const value = `${node}/${a.id}`
  const ended = change === 'ended'
  const tags = [
    { system: 'urn:vitalmesh:alert-rule', code: a.ruleKey, display: `rule set version ${a.ruleSetVersion}` },
    ...(a.escalatedAt !== null ? [{ system: 'urn:vitalmesh:alert-state', code: 'escalated', display: 'not acknowledged in time' }] : []),
  ]
  const resource = {
    resourceType: 'Flag',
    meta: { tag: tags },
    identifier: [{ system: ALERT_SYSTEM, value }],
    status: ended ? 'inactive' : 'active',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/flag-category', code: 'clinical', display: 'Clinical' }] }],
    code: { text: `vitalmesh critical alert: ${a.messages.en}` },
    subject: { reference: `Patient?identifier=${RESIDENT_SYSTEM}|${a.residentId}`, identifier: { system: RESIDENT_SYSTEM, value: a.residentId } },
    period: { start: new Date(a.openedAt).toISOString(), ...(ended && a.resolvedAt !== null ? { end: new Date(a.resolvedAt).toISOString() } : {}) },
  }
  const condition = `identifier=${encodeURIComponent(ALERT_SYSTEM)}|${encodeURIComponent(value)}`
  return {
    fullUrl: `urn:uuid:${nameUuid(`${value}/${change}`)}`,
    resource,
    request: change === 'critical' ? { method: 'POST', url: 'Flag', ifNoneExist: condition } : { method: 'PUT', url: `Flag?${condition}` },
  }
}

/** A reading as the measurements feed sees it (a spool row). */
export interface MeasuredReading { deviceId: string, residentId: string, seq: number, ts: number, hr?: number, sys?: number, dia?: number }

/**
 * The measurements feed (HL7 Personal Health Device IG): one vital-signs Observation per
 * reading, `effectiveDateTime` the device's timestamp, `device` the Device (identifier
 * `urn:vitalmesh:device|<device id>`, created conditionally in the same Bundle), and the stable
 * identifier `urn:vitalmesh:reading|<device id>/<seq>`, created conditionally, so a re-sent
 * Bundle creates nothing new. A cuff reading is a BP panel 85354-9 (8480-6, 8462-4 of that one
 * reading) with the pulse rate 8867-4 it measured as a third component; a reading of heart rate
 * only is an 8867-4 Observation.
 */
export function measurementEntries (readings: readonly MeasuredReading[]): FhirEntry[] {
  const out: FhirEntry[] = []
  const devices = new Map<string, string>()
  for (const r of readings) {
    if (r.sys === undefined && r.hr === undefined) continue
    let deviceUrl = devices.get(r.deviceId)
    if (!deviceUrl) {
      deviceUrl = `urn:uuid:${nameUuid(`device/${r.deviceId}`)}`
      devices.set(r.deviceId, deviceUrl)
      out.push({
        fullUrl: deviceUrl,
        resource: { resourceType: 'Device', identifier: [{ system: DEVICE_SYSTEM, value: r.deviceId }] },
        request: { method: 'POST', url: 'Device', ifNoneExist: `identifier=${encodeURIComponent(DEVICE_SYSTEM)}|${encodeURIComponent(r.deviceId)}` },
      })
    }
    const value = `${r.deviceId}/${r.seq}`
    const hr = r.hr !== undefined ? { code: { coding: [{ system: LOINC, code: '8867-4', display: 'Heart rate' }] }, valueQuantity: qty(r.hr, '/min') } : undefined
    const body = r.sys !== undefined && r.dia !== undefined
      ? {
          code: { coding: [{ system: LOINC, code: '85354-9', display: 'Blood pressure panel with all children optional' }], text: 'Blood pressure' },
          component: [
            { code: { coding: [{ system: LOINC, code: '8480-6', display: 'Systolic blood pressure' }] }, valueQuantity: qty(r.sys, 'mm[Hg]') },
            { code: { coding: [{ system: LOINC, code: '8462-4', display: 'Diastolic blood pressure' }] }, valueQuantity: qty(r.dia, 'mm[Hg]') },
            ...(hr ? [hr] : []),
          ],
        }
      : { code: { coding: [{ system: LOINC, code: '8867-4', display: 'Heart rate' }], text: 'Heart rate' }, valueQuantity: hr!.valueQuantity }
    const condition = `identifier=${encodeURIComponent(READING_SYSTEM)}|${encodeURIComponent(value)}`
    out.push({
      fullUrl: `urn:uuid:${nameUuid(`reading/${value}`)}`,
      resource: {
        resourceType: 'Observation',
        identifier: [{ system: READING_SYSTEM, value }],
        status: 'final',
        category: [CATEGORY],
        subject: { reference: `Patient?identifier=${RESIDENT_SYSTEM}|${r.residentId}`, identifier: { system: RESIDENT_SYSTEM, value: r.residentId } },
        effectiveDateTime: new Date(r.ts).toISOString(),
        device: { reference: deviceUrl },
        ...body,
      },
      request: { method: 'POST', url: 'Observation', ifNoneExist: condition },
    })
  }
  return out
}
