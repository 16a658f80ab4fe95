import type { Concern, Severity } from './ruleset.ts'
import type { Detail } from './engine.ts'

export const LANGUAGES = ['en', 'zh-CN'] as const
export type Language = typeof LANGUAGES[number]

export function languageOf (s: string | null | undefined): Language {
  return s === 'zh-CN' || s === 'zh' ? 'zh-CN' : 'en'
}

type Text = string | { en: string, 'zh-CN'?: string }

export function textIn (t: Text | undefined, lang: Language): string {
  if (t === undefined) return ''
  if (typeof t === 'string') return t
  return (lang === 'zh-CN' ? t['zh-CN'] : undefined) ?? t.en
}

/**
 * What to do, by concern and severity. The critical blood-pressure advice is the AHA's
 * (clinical-thresholds.md §1): wait 5 minutes and measure again; if still this high,
 * contact a clinician; emergency care when there are symptoms. Nothing more is promised.
 * Heart-rate advice does not tell someone to rest: the resting-HR rules fire only after
 * ten minutes at rest.
 */
const ADVICE: Record<Language, { remeasureCritical: string, remeasureWarning: string, bpCritical: string, bpWarning: string, bpLow: string, hr: string, average: string, noData: string, score: string, info: string, other: string }> = {
  en: {
    remeasureCritical: 'Wait 5 minutes and measure again.',
    remeasureWarning: 'Sit quietly for 5 minutes and measure again.',
    bpCritical: 'If it is still this high, contact your clinician. If you have symptoms such as chest pain, shortness of breath, weakness or trouble speaking, seek emergency care.',
    bpWarning: 'If it stays this high, contact your doctor.',
    bpLow: 'Sit or lie down and measure again. If you feel dizzy or faint, or it stays this low, contact your doctor.',
    hr: 'If you feel unwell (dizziness, chest pain, shortness of breath or fainting), seek care now; otherwise contact your doctor.',
    average: 'Your home average is above the threshold for hypertension: contact your doctor to discuss it.',
    noData: 'Check that your device is charged, worn and connected.',
    score: 'Measure again. If it stays out of range, contact your care team.',
    info: 'No action needed now; mention it to your doctor at your next visit.',
    other: 'Measure again. If it stays out of range, contact your doctor.',
  },
  'zh-CN': {
    remeasureCritical: '请等待 5 分钟后再测一次。',
    remeasureWarning: '请安静坐 5 分钟后再测一次。',
    bpCritical: '如果仍然这么高，请联系您的医生。如果出现胸痛、呼吸困难、无力或说话困难等症状，请立即就医急诊。',
    bpWarning: '如果仍然这么高，请联系您的医生。',
    bpLow: '请坐下或躺下后再测一次。如果感到头晕或快要晕倒，或血压仍然这么低，请联系您的医生。',
    hr: '如果感到不适（头晕、胸痛、呼吸困难或晕厥），请立即就医；否则请联系您的医生。',
    average: '您的家庭血压平均值高于高血压阈值：请联系医生讨论。',
    noData: '请检查设备是否已充电、佩戴并已连接。',
    score: '请再测一次。如果仍然超出范围，请联系您的医护团队。',
    info: '目前无需处理；下次就诊时请告诉医生。',
    other: '请再测一次。如果仍然超出范围，请联系您的医生。',
  },
}

/** `historic`: the reading is old, its message already says to measure again now */
function advice (concern: Concern, severity: Severity, lang: Language, historic = false): string {
  const a = ADVICE[lang]
  if (severity === 'info') return a.info
  switch (concern) {
    case 'bp-high': {
      const [again, then] = severity === 'critical' ? [a.remeasureCritical, a.bpCritical] : [a.remeasureWarning, a.bpWarning]
      return historic ? then : `${again}${lang === 'zh-CN' ? '' : ' '}${then}`
    }
    case 'bp-low': return a.bpLow
    case 'hr': case 'hr-high': case 'hr-low': return a.hr
    case 'bp-average': return a.average
    case 'no-data': return a.noData
    case 'score': return a.score
    default: return a.other
  }
}

const RESOLVED: Record<Language, string> = { en: 'Back in range', 'zh-CN': '已恢复正常范围' }

/**
 * Describes what was seen, in the resident's language. `titled` when the title already
 * names the measure ("Blood pressure: 190/100 mmHg", not "Blood pressure: blood pressure …").
 */
export function describe (d: Detail, lang: Language, categoryTitle?: string, titled = false): string {
  const zh = lang === 'zh-CN'
  const parts: string[] = []
  if (d.average) {
    const a = d.average
    if (a.sys !== undefined) parts.push(zh ? `平均血压 ${a.sys}/${a.dia} mmHg（${a.n} 次测量）` : `average blood pressure ${a.sys}/${a.dia} mmHg over ${a.n} readings`)
    else if (a.hr !== undefined) parts.push(zh ? `平均心率 ${a.hr} 次/分` : `average heart rate ${a.hr} bpm`)
  } else if (d.silentForS !== undefined) {
    const h = Math.round(d.silentForS / 360) / 10
    parts.push(zh ? `已有 ${h} 小时没有收到您设备的数据` : `no reading from your devices for ${h} h`)
  } else {
    const cat = categoryTitle ? (zh ? `（${categoryTitle}）` : ` (${categoryTitle})`) : ''
    if (d.values.sys !== undefined) parts.push(titled ? `${d.values.sys}/${d.values.dia} mmHg${cat}` : zh ? `血压 ${d.values.sys}/${d.values.dia} mmHg${cat}` : `blood pressure ${d.values.sys}/${d.values.dia} mmHg${cat}`)
    if (d.values.hr !== undefined && !(titled && d.values.sys !== undefined)) parts.push(zh ? `心率 ${d.values.hr} 次/分` : `heart rate ${d.values.hr} bpm`)
  }
  if (d.scores) {
    const s = Object.entries(d.scores).map(([k, v]) => `${k} ${v}`).join(', ')
    parts.push(zh ? `NEWS2 单项评分: ${s}（不是完整的 NEWS2）` : `NEWS2 sub-scores: ${s} (not a full NEWS2)`)
  }
  if (d.change !== undefined) parts.push(zh ? `变化 ${d.change}` : `change of ${d.change}`)
  return parts.join(zh ? '，' : ', ')
}

export interface MessageContext {
  title: string
  detail: string
  concern: Concern
  severity: Severity
  /** the reading's local time, when the reading arrived too late to be a live alarm */
  historicAt?: string
  /** the device flagged the reading */
  motion?: boolean
  lowConfidence?: boolean
}

const HISTORIC: Record<Language, (at: string, what: string) => string> = {
  en: (at, what) => `Your reading at ${at} was ${what}. It arrived late, so this is not a live alarm: measure again now.`,
  'zh-CN': (at, what) => `您在 ${at} 的读数为${what}。该读数延迟到达，并非实时警报：请现在再测一次。`,
}
const FLAGGED: Record<Language, { motion: string, confidence: string }> = {
  en: {
    motion: 'The device flagged this reading as taken while moving, which can distort it; measure again sitting still.',
    confidence: 'The device reported low signal quality for this reading; measure again sitting still.',
  },
  'zh-CN': {
    motion: '设备标记该读数是在活动中测得的，可能不准确；请静坐后再测一次。',
    confidence: '设备报告该读数信号质量低；请静坐后再测一次。',
  },
}

/** The message a resident reads: what, what was seen, and what to do. */
export function alertMessage (c: MessageContext, lang: Language): string {
  const zh = lang === 'zh-CN'
  const parts: string[] = []
  if (c.historicAt) {
    parts.push(`${c.title}${zh ? '：' : ': '}${HISTORIC[lang](c.historicAt, c.detail)}`)
    if (c.severity !== 'info') parts.push(advice(c.concern, c.severity, lang, true))
  } else {
    parts.push(`${c.title}${zh ? '：' : ': '}${c.detail}${zh ? '。' : '.'}`)
    parts.push(advice(c.concern, c.severity, lang))
  }
  if (c.motion) parts.push(FLAGGED[lang].motion)
  else if (c.lowConfidence) parts.push(FLAGGED[lang].confidence)
  return parts.filter((p) => p.length > 0).join(zh ? '' : ' ')
}

export function resolvedMessage (title: string, lang: Language): string {
  return lang === 'zh-CN' ? `${RESOLVED[lang]}：${title}。` : `${RESOLVED[lang]}: ${title}.`
}

/** An alert that ended because its standard was withdrawn or replaced: never "back in range". */
export function endedMessage (title: string, reason: 'withdrawn' | 'superseded', version: string | undefined, lang: Language): string {
  if (lang === 'zh-CN') {
    return reason === 'withdrawn'
      ? `${title}：该提醒所依据的标准已被撤销，因此提醒已结束。这并不表示您的读数已恢复正常；请照常测量。`
      : `${title}：该提醒所依据的标准已由新版本 ${version ?? ''} 取代，新版本不再认为此读数需要提醒。`
  }
  return reason === 'withdrawn'
    ? `${title}: the standard behind this alert was withdrawn, so the alert has ended. This does not mean your readings are back in range; keep measuring as usual.`
    : `${title}: the standard behind this alert was replaced by version ${version ?? ''}, which no longer raises it for this reading.`
}

/** A reading's time in the resident's zone, as a person reads it: "07:10", or "11-30 07:10" on another day. */
export function localTime (ts: number, timeZone: string, now: number, lang: Language): string {
  const fmt = (o: Intl.DateTimeFormatOptions): string => {
    try { return new Intl.DateTimeFormat(lang === 'zh-CN' ? 'zh-CN' : 'en-GB', { ...o, timeZone }).format(ts) } catch { return new Intl.DateTimeFormat('en-GB', { ...o, timeZone: 'UTC' }).format(ts) }
  }
  const day = (t: number): string => { try { return new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' }).format(t) } catch { return new Date(t).toISOString().slice(0, 10) } }
  const time = fmt({ hour: '2-digit', minute: '2-digit', hour12: false })
  if (day(ts) === day(now)) return time
  return `${fmt({ month: '2-digit', day: '2-digit' })} ${time}`
}

const SEVERITY_WORD: Record<Language, Record<Severity, string>> = {
  en: { critical: 'critical', warning: 'warning', info: 'note' },
  'zh-CN': { critical: '危急', warning: '警告', info: '提示' },
}

/**
 * What a follower reads about the resident it follows. The resident's own message is quoted
 * as it was sent (in the follower's language), so the follower knows exactly what the
 * resident was told; the line before it says whose alert it is and what is asked of the
 * follower. `minutes`: how long an escalated alert went unacknowledged.
 */
export function followerMessage (kind: 'alert' | 'escalation', c: { residentName: string, severity: Severity, concern: Concern, residentMessage: string, minutes?: number }, lang: Language): string {
  const zh = lang === 'zh-CN'
  const who = c.residentName
  const sev = SEVERITY_WORD[lang][c.severity]
  if (kind === 'alert') return zh ? `${who}的提醒（${sev}）。${who}收到的内容：“${c.residentMessage}”` : `Alert for ${who} (${sev}). ${who} was told: "${c.residentMessage}"`
  const m = Math.max(1, Math.round(c.minutes ?? 0))
  if (c.concern === 'no-data') {
    return zh
      ? `${who}的设备长时间没有数据（${who}被列为高风险）。请联系${who}，确认一切正常后在应用中确认此提醒。`
      : `${who}'s devices have been silent for a long time (${who} is marked high-risk). Please contact ${who}, and acknowledge this alert once you know they are all right.`
  }
  return zh
    ? `${who}已有 ${m} 分钟未确认一条${sev}提醒。请联系或探望${who}，处理后请确认该提醒。${who}收到的内容：“${c.residentMessage}”`
    : `${who} has not acknowledged a ${sev} alert for ${m} min. Please contact or check on ${who}, and acknowledge the alert once you have. ${who} was told: "${c.residentMessage}"`
}
