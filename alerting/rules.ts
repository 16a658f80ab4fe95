import type { Reading } from '../core/index.ts'

export type Severity = 'info' | 'warning' | 'critical'

/** ACC/AHA 2017 categories, in ascending order of severity. */
export const ACC_AHA_2017_CATEGORIES = ['normal', 'elevated', 'stage1', 'stage2', 'crisis'] as const
export type AccAhaCategory = typeof ACC_AHA_2017_CATEGORIES[number]

/**
 * ACC/AHA 2017 (Whelton, Hypertension 2018;71:1269) with the AHA hypertensive-crisis
 * row (>180 and/or >120). Bands are half-open so decimal values never fall into a gap;
 * the category is the higher of the SBP and DBP categories. 180/120 is Stage 2.
 */
export function classifyAccAha2017 (sys: number, dia: number): AccAhaCategory {
  const bySys = sys > 180 ? 4 : sys >= 140 ? 3 : sys >= 130 ? 2 : sys >= 120 ? 1 : 0
  const byDia = dia > 120 ? 4 : dia >= 90 ? 3 : dia >= 80 ? 2 : 0
  return ACC_AHA_2017_CATEGORIES[Math.max(bySys, byDia)]!
}

export interface Finding {
  ruleId: string
  severity: Severity
  /** the condition holds for this reading */
  active: boolean
  /** a short English description of what was seen */
  detail: string
}

export interface Rule {
  id: string
  severity: Severity
  title: string
  /** undefined when the reading lacks the inputs this rule needs */
  evaluate(r: Reading): Finding | undefined
}

export interface RuleSet {
  id: string
  version: string
  publisher: string
  citation: string
  provenance: string
  rules: Rule[]
}

function bpRule (id: string, severity: Severity, title: string, category: AccAhaCategory): Rule {
  return {
    id, severity, title,
    evaluate: (r) => {
      if (r.sys === undefined || r.dia === undefined) return undefined
      const c = classifyAccAha2017(r.sys, r.dia)
      return { ruleId: id, severity, active: c === category, detail: `blood pressure ${r.sys}/${r.dia} mmHg (ACC/AHA 2017: ${c})` }
    },
  }
}

function hrRule (id: string, severity: Severity, title: string, test: (hr: number) => boolean): Rule {
  return {
    id, severity, title,
    evaluate: (r) => r.hr === undefined ? undefined : { ruleId: id, severity, active: test(r.hr), detail: `heart rate ${r.hr} bpm` },
  }
}

/**
 * The built-in default: ACC/AHA 2017 Stage 2 and hypertensive crisis, and the
 * wearable heart-rate notification thresholds (high 120, low 40 bpm). This first
 * engine judges single readings; the duration condition ("for 10 minutes at rest")
 * belongs to the full engine.
 */
export const defaultRuleSet: RuleSet = {
  id: 'vitalmesh-default',
  version: '1.0.0',
  publisher: 'vitalmesh',
  citation: 'Whelton PK et al. 2017 ACC/AHA guideline, Hypertension 2018;71:1269 (categories, crisis row from the AHA consumer chart); Apple Watch heart-rate notifications, support.apple.com HT208931',
  provenance: 'Crisis row (>180 and/or >120) seen only in a mirror of the AHA chart (secondary source). Default low heart-rate threshold of 40 bpm is unconfirmed (reference §2).',
  rules: [
    bpRule('bp.crisis', 'critical', 'Hypertensive crisis', 'crisis'),
    bpRule('bp.stage2', 'warning', 'Stage 2 hypertension', 'stage2'),
    hrRule('hr.high', 'warning', 'High heart rate', (hr) => hr > 120),
    hrRule('hr.low', 'warning', 'Low heart rate', (hr) => hr < 40),
  ],
}

/** Evaluates one reading against a rule set; pure. */
export function evaluate (r: Reading, ruleSet: RuleSet): Finding[] {
  const out: Finding[] = []
  for (const rule of ruleSet.rules) {
    const f = rule.evaluate(r)
    if (f) out.push(f)
  }
  return out
}
