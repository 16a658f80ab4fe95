import type { Activity } from '../core/index.ts'
import type { ValidationStatus } from './devices.ts'
import type { Guideline } from './protocol.ts'

/** A reading as a report sees it: who measured it with what, and whether that model may count. */
export interface ReportReading {
  ts: number
  deviceId: string
  sys?: number
  dia?: number
  hr?: number
  activity?: Activity
  deviceModel: string | null
  validation: ValidationStatus
}

/** Identifies one reading, so a report's Observations can say what they were derived from. */
export interface ReadingRef { deviceId: string, ts: number, sys: number, dia: number, deviceModel: string | null }

export interface RunContext {
  /** when the resident (or the hospital) started the protocol */
  startTs: number
  /** the resident's IANA time zone: days, mornings and nights are local */
  timeZone: string
  guideline: Guideline
  /** wall clock: what has not happened yet is pending, not missed */
  now: number
}

export interface Exclusions { unvalidated: number, cuffless: number, unknown: number, incomplete: number }

export function emptyExclusions (): Exclusions { return { unvalidated: 0, cuffless: 0, unknown: 0, incomplete: 0 } }

/**
 * Whether a reading may enter an average: a validated cuff model, and both SBP and DBP of
 * the same measurement (a BP mean never mixes systolic and diastolic of different readings).
 */
export function admit (r: ReportReading, x: Exclusions): r is ReportReading & { sys: number, dia: number } {
  if (r.validation !== 'validated') { x[r.validation]++; return false }
  if (r.sys === undefined || r.dia === undefined) { x.incomplete++; return false }
  return true
}

export interface ModelUse { model: string | null, validation: ValidationStatus, readings: number }

export function modelUse (readings: readonly ReportReading[]): ModelUse[] {
  const m = new Map<string, ModelUse>()
  for (const r of readings) {
    const k = `${r.deviceModel ?? ''}\u0000${r.validation}`
    const u = m.get(k) ?? { model: r.deviceModel, validation: r.validation, readings: 0 }
    u.readings++
    m.set(k, u)
  }
  return [...m.values()].sort((a, b) => String(a.model).localeCompare(String(b.model)))
}

export const round1 = (x: number): number => Math.round(x * 10) / 10

export function meanBp (rs: readonly { sys: number, dia: number }[]): { sys: number, dia: number } {
  let s = 0; let d = 0
  for (const r of rs) { s += r.sys; d += r.dia }
  return { sys: round1(s / rs.length), dia: round1(d / rs.length) }
}

export const ref = (r: ReportReading & { sys: number, dia: number }): ReadingRef => ({ deviceId: r.deviceId, ts: r.ts, sys: r.sys, dia: r.dia, deviceModel: r.deviceModel })

export type BpClass = 'hypertension' | 'below-threshold'

export const CLASS_TEXT: Record<string, { en: string, 'zh-CN': string }> = {
  'hypertension': { en: 'at or above the hypertension threshold', 'zh-CN': '达到或超过高血压阈值' },
  'below-threshold': { en: 'below the hypertension threshold', 'zh-CN': '低于高血压阈值' },
  'insufficient-data': { en: 'insufficient data', 'zh-CN': '数据不足' },
  'extreme-dipper': { en: 'extreme dipper', 'zh-CN': '超杓型' },
  'dipper': { en: 'dipper', 'zh-CN': '杓型' },
  'non-dipper': { en: 'non-dipper', 'zh-CN': '非杓型' },
  'reverse-dipper': { en: 'reverse dipper', 'zh-CN': '反杓型' },
}
