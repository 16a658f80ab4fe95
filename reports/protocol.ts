import { z } from 'zod'

/**
 * Clinical report protocols are data, versioned like rule sets: a home-BP protocol says
 * how many days, which sessions and how many readings; a 24-hour profile says how long,
 * which fallback sleep window and how many readings a period needs. Another protocol
 * (5 days, readings in threes) is another document, not code.
 */

const Id = z.string().regex(/^[A-Za-z0-9._-]{1,64}$/)
const Version = z.string().regex(/^\d+\.\d+\.\d+$/, 'a version is like 1.0.0')
/** local wall-clock time, HH:MM; 24:00 is the end of the day */
const WallTime = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$|^24:00$/, 'a local time is HH:MM (00:00-24:00)')
const Text = z.strictObject({ en: z.string(), 'zh-CN': z.string() })

export function wallMinutes (t: string): number {
  const [h, m] = t.split(':').map(Number) as [number, number]
  return h * 60 + m
}

export const SessionSchema = z.strictObject({
  id: z.enum(['morning', 'evening']),
  title: Text,
  from: WallTime.describe('the session window opens at this local time'),
  to: WallTime.describe('and closes at this one (exclusive)'),
})

export const HomeBpProtocolSchema = z.strictObject({
  kind: z.literal('home-bp'),
  id: Id,
  version: Version,
  title: Text,
  days: z.number().int().min(1).max(31),
  sessions: z.array(SessionSchema).min(1),
  readingsPerSession: z.number().int().min(1).max(10),
  readingIntervalS: z.number().int().min(0).describe('readings of a session are about this far apart'),
  discardFirstDay: z.boolean(),
  minValidReadings: z.number().int().min(1),
  provenance: z.record(z.string(), z.string()).describe('where each number comes from: the reference file, or "project heuristic"'),
})
export type HomeBpProtocol = z.infer<typeof HomeBpProtocolSchema>

export const ProfileProtocolSchema = z.strictObject({
  kind: z.literal('abpm-24h'),
  id: Id,
  version: Version,
  title: Text,
  durationH: z.number().int().min(1).max(48),
  sleepWindow: z.strictObject({ from: WallTime, to: WallTime }).describe('night-time when a reading reports no activity'),
  minDaytimeReadings: z.number().int().min(1),
  minNighttimeReadings: z.number().int().min(1),
  morningWindowMin: z.number().int().min(30).describe('the morning after waking, for the morning surge'),
  provenance: z.record(z.string(), z.string()),
})
export type ProfileProtocol = z.infer<typeof ProfileProtocolSchema>

export const ReportProtocolSchema = z.discriminatedUnion('kind', [HomeBpProtocolSchema, ProfileProtocolSchema])
export type ReportProtocol = z.infer<typeof ReportProtocolSchema>

const REF = 'shared/reference/clinical-thresholds.md'

export const HOME_BP_7D: HomeBpProtocol = HomeBpProtocolSchema.parse({
  kind: 'home-bp',
  id: 'home-bp-7d',
  version: '1.0.0',
  title: { en: 'Home blood pressure monitoring, 7 days', 'zh-CN': '家庭血压监测（7天）' },
  days: 7,
  sessions: [
    { id: 'morning', title: { en: 'morning', 'zh-CN': '早晨' }, from: '04:00', to: '12:00' },
    { id: 'evening', title: { en: 'evening', 'zh-CN': '晚间' }, from: '17:00', to: '24:00' },
  ],
  readingsPerSession: 2,
  readingIntervalS: 60,
  discardFirstDay: true,
  minValidReadings: 12,
  provenance: {
    days: `${REF} §1 out-of-office: NHC guidance gives home ≥135/85 averaged over 5–7 days (✔); 7 days is the upper end`,
    sessions: 'morning and evening sessions: the brief of issue 15; the reference file gives no session times, so the windows (04:00–12:00, 17:00–24:00 local) are a project heuristic',
    readingsPerSession: 'two readings about a minute apart: the brief of issue 15 (the reference file gives no number); project heuristic',
    discardFirstDay: 'first day discarded: the brief of issue 15 (not in the reference file); project heuristic',
    minValidReadings: 'at least 12 valid readings: the brief of issue 15 (not in the reference file); project heuristic',
    sessionCap: 'readings of a session beyond readingsPerSession are not averaged, so a device that measures often does not outweigh the protocol: project heuristic',
    thresholds: `${REF} §1 out-of-office thresholds: averages taken under a protocol, hypertension if the average is ≥ the value, SBP and/or DBP`,
  },
})

export const HOME_BP_5D_TRIPLES: HomeBpProtocol = HomeBpProtocolSchema.parse({
  ...HOME_BP_7D,
  id: 'home-bp-5d-triples',
  title: { en: 'Home blood pressure monitoring, 5 days, readings in threes', 'zh-CN': '家庭血压监测（5天，每次3遍）' },
  days: 5,
  readingsPerSession: 3,
  provenance: { ...HOME_BP_7D.provenance, days: `${REF} §1: NHC guidance, home BP averaged over 5–7 days (✔); 5 days is the lower end`, readingsPerSession: 'three readings a session: an alternative protocol as data; project heuristic' },
})

export const ABPM_24H: ProfileProtocol = ProfileProtocolSchema.parse({
  kind: 'abpm-24h',
  id: 'abpm-24h',
  version: '1.0.0',
  title: { en: '24-hour blood pressure profile', 'zh-CN': '24小时血压谱' },
  durationH: 24,
  sleepWindow: { from: '22:00', to: '07:00' },
  minDaytimeReadings: 20,
  minNighttimeReadings: 7,
  morningWindowMin: 120,
  provenance: {
    sleepWindow: 'sleep is taken from readings reporting activity "sleep"; a reading without activity is night-time inside 22:00–07:00 local. The reference file gives no window: project default (project heuristic)',
    minReadings: 'at least 20 daytime and 7 night-time readings, else insufficient: the brief of issue 15 (not in the reference file); project heuristic',
    dipping: 'night-time dip % = (day − night) / day × 100 on SBP; classes ≥20 extreme dipper, 10–20 dipper, 0–10 non-dipper, <0 reverse dipper from the brief of issue 15 (the reference file has no dipping classes: project heuristic), coded half-open per the reference\'s integer-band rule (§ key): 10 ≤ x < 20 is dipper, 0 ≤ x < 10 non-dipper',
    morningSurge: 'sleep-trough morning surge: mean SBP in the first 2 h after waking minus the mean of the lowest night-time SBP and the readings either side of it. Not in the reference file: project heuristic, reported without a threshold',
    thresholds: `${REF} §1 out-of-office thresholds: ABPM day, night and 24 h columns, hypertension if the average is ≥ the value, SBP and/or DBP`,
  },
})

export const BUILTIN_PROTOCOLS: readonly ReportProtocol[] = [HOME_BP_7D, HOME_BP_5D_TRIPLES, ABPM_24H]

/** The guideline whose out-of-office thresholds classify a resident's report. */
export const GuidelineSchema = z.enum(['esh-2023', 'china-2018', 'acc-aha-2017', 'acc-aha-2025'])
export type Guideline = z.infer<typeof GuidelineSchema>

export interface BpThreshold { sys: number, dia: number }
export interface OutOfOfficeThresholds { home: BpThreshold, day: BpThreshold, night: BpThreshold, h24: BpThreshold, source: string }

const EUROPEAN: OutOfOfficeThresholds = {
  home: { sys: 135, dia: 85 }, day: { sys: 135, dia: 85 }, night: { sys: 120, dia: 70 }, h24: { sys: 130, dia: 80 },
  source: `${REF} §1 out-of-office thresholds, row "ESC/ESH 2018, ESH 2023, China 2018" (KSH 2013 Table 6 ✔; Chinese values bohe.cn ⚠, NHC home ≥135/85 ✔)`,
}
const AMERICAN: OutOfOfficeThresholds = {
  home: { sys: 130, dia: 80 }, day: { sys: 130, dia: 80 }, night: { sys: 110, dia: 65 }, h24: { sys: 125, dia: 75 },
  source: `${REF} §1 out-of-office thresholds, row "ACC/AHA equivalents" (2017 Table 11, 2025 Table 7, guidelinecentral.com ✔)`,
}

export const OUT_OF_OFFICE: Record<Guideline, OutOfOfficeThresholds> = {
  'esh-2023': EUROPEAN, 'china-2018': EUROPEAN, 'acc-aha-2017': AMERICAN, 'acc-aha-2025': AMERICAN,
}

/** "hypertension if the average is ≥ the value, SBP and/or DBP" (reference §1) */
export function atOrAbove (mean: { sys: number, dia: number }, t: BpThreshold): boolean {
  return mean.sys >= t.sys || mean.dia >= t.dia
}
