import { z } from 'zod'
import { IdSchema, ActivitySchema } from '../core/index.ts'

/**
 * A rule set is data: research institutions publish it (JSON or YAML), operators
 * activate a version, the engine compiles it. This schema is the single source of truth.
 */
export const MetricSchema = z.enum(['hr', 'sys', 'dia', 'pp', 'map']).describe('hr, sys, dia, pulse pressure (sys-dia), mean arterial pressure (dia + pp/3)')
export const SeveritySchema = z.enum(['info', 'warning', 'critical'])
export type Metric = z.infer<typeof MetricSchema>
export type Severity = z.infer<typeof SeveritySchema>

export const ConditionSchema = z.union([
  z.strictObject({ metric: MetricSchema, op: z.enum(['>', '>=', '<', '<=']), value: z.number() }),
  z.strictObject({ metric: MetricSchema, op: z.literal('between'), min: z.number(), max: z.number() }).describe('min <= x < max (half-open)'),
  z.strictObject({ activity: z.array(ActivitySchema).min(1) }).describe('the reading was taken during one of these activities'),
])
export type Condition = z.infer<typeof ConditionSchema>

/**
 * What a rule is about. Several rule sets may judge the same reading; the resident hears
 * once per reading and concern (the most severe verdict), clinicians see every verdict.
 */
export const ConcernSchema = z.enum(['bp-high', 'bp-low', 'hr-high', 'hr-low', 'hr', 'bp-average', 'score', 'no-data', 'other'])
export type Concern = z.infer<typeof ConcernSchema>

const Text = z.union([z.string(), z.strictObject({ en: z.string(), 'zh-CN': z.string().optional() })])

const LowerBound = z.strictObject({ op: z.enum(['>', '>=']), value: z.number() })
export const CategorySchema = z.strictObject({
  id: z.string().min(1),
  title: Text.optional(),
  sys: LowerBound.optional(),
  dia: LowerBound.optional(),
}).describe('a category is reached by a metric when the value meets its lower bound; categories are listed in ascending order')

const ScoreBand = z.strictObject({ upTo: z.number().nullable().describe('inclusive upper bound; null = no bound'), points: z.number().int().min(0) })

const common = {
  id: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/),
  title: Text,
  severity: SeveritySchema.default('warning'),
  clear: z.strictObject({
    hysteresis: z.number().min(0).default(0).describe('a threshold must be crossed back by this much before the alert may clear'),
    holdDownS: z.number().min(0).default(0).describe('the condition must stay false this long before the alert resolves'),
  }).prefault({}),
  cooldownS: z.number().min(0).default(0).describe('after resolving, the same alert does not open again for this long (in reading time); never for a worse severity, never for a critical'),
  concern: ConcernSchema.optional().describe('what the rule is about; a resident gets one notification per reading and concern (default: from the rule\'s kind and metrics)'),
  skipActivities: z.array(ActivitySchema).optional().describe('readings taken during these activities are not evaluated by this rule (e.g. resting-HR rules skip exercise)'),
}

export const RuleSchema = z.discriminatedUnion('kind', [
  z.strictObject({ ...common, kind: z.literal('threshold'), when: z.array(ConditionSchema).min(1).describe('all must hold') }),
  z.strictObject({
    ...common, kind: z.literal('classification'),
    categories: z.array(CategorySchema).min(2),
    alertOn: z.record(z.string(), SeveritySchema).describe('category id -> severity of the alert it raises'),
  }),
  z.strictObject({
    ...common, kind: z.literal('sustained'), when: z.array(ConditionSchema).min(1), forS: z.number().positive(),
    maxGapS: z.number().positive().optional().describe('readings must cover the duration: a gap longer than this between readings breaks the run'),
  }),
  z.strictObject({ ...common, kind: z.literal('nOfM'), when: z.array(ConditionSchema).min(1), n: z.number().int().min(1), m: z.number().int().min(1).max(32) }),
  z.strictObject({
    ...common, kind: z.literal('rateOfChange'), metric: MetricSchema, direction: z.enum(['rise', 'fall']),
    delta: z.number().positive(), withinS: z.number().positive(),
  }),
  z.strictObject({ ...common, kind: z.literal('noData'), forS: z.number().positive() }),
  z.strictObject({
    ...common, kind: z.literal('score'),
    bands: z.strictObject({ sys: z.array(ScoreBand).min(1).optional(), hr: z.array(ScoreBand).min(1).optional() }).describe('ordered <= tests per metric'),
    anySubScoreAtLeast: z.number().int().min(1),
  }),
  z.strictObject({
    ...common, kind: z.literal('average'), windowS: z.number().positive(), minReadings: z.number().int().min(1),
    any: z.array(z.strictObject({ metric: MetricSchema, op: z.enum(['>', '>=', '<', '<=']), value: z.number() })).min(1).describe('alert when the average meets any of these'),
  }),
])
export type Rule = z.infer<typeof RuleSchema>

export const AudienceSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('all') }),
  z.strictObject({
    kind: z.literal('cohort'),
    ageMin: z.number().int().min(0).optional(), ageMax: z.number().int().min(0).optional().describe('exclusive'),
    conditions: z.array(z.string()).optional().describe('the resident has any of these conditions'),
    regions: z.array(z.string()).optional(),
  }),
  z.strictObject({ kind: z.literal('resident'), residentId: IdSchema }),
])
export type Audience = z.infer<typeof AudienceSchema>

export const RuleSetDocSchema = z.strictObject({
  id: IdSchema,
  version: z.string().regex(/^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$/, 'a semantic version such as 1.0.0'),
  publisher: z.string().min(1),
  citation: z.string().min(1),
  effectiveDate: z.iso.date(),
  provenance: z.string().optional().describe('where numbers come from, and which are unconfirmed'),
  notes: z.string().optional(),
  audience: AudienceSchema,
  rules: z.array(RuleSchema).min(1),
}).superRefine((doc, ctx) => {
  const seen = new Set<string>()
  doc.rules.forEach((r, i) => {
    if (seen.has(r.id)) ctx.addIssue({ code: 'custom', path: ['rules', i, 'id'], message: `duplicate rule id ${r.id}` })
    seen.add(r.id)
    if (r.kind === 'classification') {
      const ids = new Set(r.categories.map((c) => c.id))
      for (const k of Object.keys(r.alertOn)) if (!ids.has(k)) ctx.addIssue({ code: 'custom', path: ['rules', i, 'alertOn', k], message: `unknown category ${k}` })
    }
    if (r.kind === 'nOfM' && r.n > r.m) ctx.addIssue({ code: 'custom', path: ['rules', i, 'n'], message: 'n must not exceed m' })
  })
})
export type RuleSetDoc = z.infer<typeof RuleSetDocSchema>
export type RuleSetDocInput = z.input<typeof RuleSetDocSchema>

/** The concern of a rule: given, or inferred from its kind and metrics. */
export function concernOf (r: Rule): Concern {
  if (r.concern) return r.concern
  switch (r.kind) {
    case 'classification': return 'bp-high'
    case 'average': return 'bp-average'
    case 'score': return 'score'
    case 'noData': return 'no-data'
    case 'rateOfChange': return r.metric === 'hr' ? 'hr' : 'bp-high'
    default: {
      const cs = r.when.filter((x): x is Extract<Condition, { metric: Metric }> => 'metric' in x)
      if (cs.length === 0) return 'other'
      // high if any bound is a lower bound (sys >= 140 and dia < 90 is a high reading)
      const high = cs.some((c) => c.op === '>' || c.op === '>=' || c.op === 'between')
      if (cs.every((c) => c.metric === 'hr')) return high ? 'hr-high' : 'hr-low'
      return high ? 'bp-high' : 'bp-low'
    }
  }
}
