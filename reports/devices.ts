import { z } from 'zod'

/**
 * Which device models may feed a protocol average. The 2025 AHA/ACC guideline says
 * reliance on cuffless devices "should be avoided" (3: No benefit) and the ESH Working
 * Group takes the same position (reference §1, wearable caveat ✔): readings of cuffless or
 * unvalidated models are flagged and counted, never averaged or classified.
 */
export const ValidationStatusSchema = z.enum(['validated', 'unvalidated', 'cuffless', 'unknown'])
export type ValidationStatus = z.infer<typeof ValidationStatusSchema>

export const DeviceModelSchema = z.strictObject({
  model: z.string().min(1).max(100),
  measurement: z.enum(['cuff', 'cuffless']),
  /** a validation listing (e.g. a STRIDE BP or ESH-IP entry) the operator checked */
  validated: z.boolean(),
  source: z.string().describe('where the validation status was looked up'),
})
export type DeviceModel = z.infer<typeof DeviceModelSchema>

export function validationStatus (m: DeviceModel | undefined): ValidationStatus {
  if (!m) return 'unknown'
  if (m.measurement === 'cuffless') return 'cuffless'
  return m.validated ? 'validated' : 'unvalidated'
}

/**
 * Models the demo and simulator register. A deployment passes its own catalogue; a model
 * that is in none is `unknown` and excluded like an unvalidated one.
 */
export const DEMO_DEVICE_MODELS: readonly DeviceModel[] = [
  { model: 'demo-cuff', measurement: 'cuff', validated: true, source: 'demo data: a stand-in for a validated upper-arm cuff' },
  { model: 'demo-watch', measurement: 'cuffless', validated: false, source: 'demo data: a stand-in for an optical smartwatch' },
]

/** What reports ask of a register: the validation status of a model (`unknown` when it is in none). */
export interface ValidationLookup { status(model: string | null | undefined): ValidationStatus }

/** A fixed list of models (tests, and the built-in demo entries the register falls back to). */
export class DeviceModelCatalogue implements ValidationLookup {
  private readonly byModel: Map<string, DeviceModel>
  constructor (models: readonly DeviceModel[]) { this.byModel = new Map(models.map((m) => [m.model, DeviceModelSchema.parse(m)])) }
  status (model: string | null | undefined): ValidationStatus { return validationStatus(model ? this.byModel.get(model) : undefined) }
  get (model: string): DeviceModel | undefined { return this.byModel.get(model) }
  all (): DeviceModel[] { return [...this.byModel.values()] }
}
