import type { Severity } from './ruleset.ts'
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

const ADVICE: Record<Language, Record<Severity, string>> = {
  en: {
    critical: 'Sit quietly and measure again after 5 minutes. If it stays this high, or you have chest pain, shortness of breath, weakness or trouble speaking, seek emergency care now.',
    warning: 'Rest and measure again after 5 minutes. If it stays out of range, contact your doctor.',
    info: 'No action needed now; mention it to your doctor at your next visit.',
  },
  'zh-CN': {
    critical: '请安静坐下，5 分钟后再测一次。如果仍然这么高，或出现胸痛、呼吸困难、无力或说话困难，请立即就医急诊。',
    warning: '请休息，5 分钟后再测一次。如果仍然超出范围，请联系您的医生。',
    info: '目前无需处理；下次就诊时请告诉医生。',
  },
}

const RESOLVED: Record<Language, string> = { en: 'Back in range', 'zh-CN': '已恢复正常范围' }

/** Describes what was seen, in the resident's language. */
export function describe (d: Detail, lang: Language, categoryTitle?: string): string {
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
    if (d.values.sys !== undefined) parts.push(zh ? `血压 ${d.values.sys}/${d.values.dia} mmHg${cat}` : `blood pressure ${d.values.sys}/${d.values.dia} mmHg${cat}`)
    if (d.values.hr !== undefined) parts.push(zh ? `心率 ${d.values.hr} 次/分` : `heart rate ${d.values.hr} bpm`)
  }
  if (d.scores) {
    const s = Object.entries(d.scores).map(([k, v]) => `${k} ${v}`).join(', ')
    parts.push(zh ? `NEWS2 单项评分: ${s}（不是完整的 NEWS2）` : `NEWS2 sub-scores: ${s} (not a full NEWS2)`)
  }
  if (d.change !== undefined) parts.push(zh ? `变化 ${d.change}` : `change of ${d.change}`)
  return parts.join(zh ? '，' : ', ')
}

/** The message a resident reads: what, what was seen, and what to do. */
export function alertMessage (title: string, detail: string, severity: Severity, lang: Language, resolved = false): string {
  if (resolved) return lang === 'zh-CN' ? `${RESOLVED[lang]}：${title}。` : `${RESOLVED[lang]}: ${title}.`
  return lang === 'zh-CN' ? `${title}：${detail}。${ADVICE[lang][severity]}` : `${title}: ${detail}. ${ADVICE[lang][severity]}`
}
