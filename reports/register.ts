import { z } from 'zod'
import { migrate, VitalmeshError, type Clock, type DB } from '../core/index.ts'
import { REPORT_MIGRATIONS } from './book.ts'
import { validationStatus, type DeviceModel, type ValidationLookup, type ValidationStatus } from './devices.ts'

/** A model name as devices carry it (registry `devices.model`, at most 128 characters there). */
export const ModelNameSchema = z.string().regex(/^[\p{L}\p{N}][\p{L}\p{N} ._+()-]{0,127}$/u, 'a model name: letters (any script), digits, space and . _ + ( ) -, at most 128 characters (no slash: it is a path segment)')

/**
 * What an operator registers about a model. A validated cuff names the protocol it passed
 * (e.g. "AAMI/ESH/ISO 81060-2:2018", "ESH-IP 2010") and where that was looked up (a STRIDE BP
 * or validatebp.org listing): the reference (§1) trusts a cuff only with such a validation. A
 * cuffless model may record a validation of its own kind (ISO 81060-3): its readings still stay
 * out of averages and classifications (2025 AHA/ACC: "no benefit"), they count for heart rate.
 */
export const DeviceModelEntrySchema = z.strictObject({
  status: z.enum(['validated', 'unvalidated', 'cuffless']),
  protocol: z.string().trim().min(1).max(200).optional().describe('the validation protocol a validated cuff passed; required with status validated'),
  source: z.string().trim().min(1).max(500).describe('where the validation status was looked up (a listing, a publication)'),
  note: z.string().max(1000).optional(),
}).superRefine((e, ctx) => {
  if (e.status === 'validated' && !e.protocol) ctx.addIssue({ code: 'custom', path: ['protocol'], message: 'a validated cuff names the validation protocol it passed' })
  if (e.status === 'unvalidated' && e.protocol) ctx.addIssue({ code: 'custom', path: ['protocol'], message: 'an unvalidated model passed no protocol: leave protocol out, or register it as validated' })
})
export type DeviceModelEntry = z.infer<typeof DeviceModelEntrySchema>

export interface RegisteredModel {
  model: string
  status: ValidationStatus
  protocol: string | null
  source: string
  note: string | null
  /** `register`: an operator registered it; `built-in`: a demo entry the code ships, until an operator registers the model */
  origin: 'register' | 'built-in'
  registeredBy: string | null
  registeredAt: number | null
  updatedAt: number | null
}

interface Row { model: string, status: 'validated' | 'unvalidated' | 'cuffless', protocol: string | null, source: string, note: string | null, registered_by: string, registered_at: number, updated_at: number }

function fromRow (r: Row): RegisteredModel {
  return { model: r.model, status: r.status, protocol: r.protocol, source: r.source, note: r.note, origin: 'register', registeredBy: r.registered_by, registeredAt: r.registered_at, updatedAt: r.updated_at }
}

function fromBuiltIn (m: DeviceModel): RegisteredModel {
  return { model: m.model, status: validationStatus(m), protocol: null, source: m.source, note: null, origin: 'built-in', registeredBy: null, registeredAt: null, updatedAt: null }
}

/**
 * The validated-device register: which device models' BP readings may enter a report's
 * averages and classification. Its table is the reports component's (REPORT_MIGRATIONS step
 * 2). Kept in memory as well, since reports ask for every reading they collect; this node is
 * the only writer (the API), so the copy is never stale.
 */
export class DeviceModelRegister implements ValidationLookup {
  private readonly byModel = new Map<string, RegisteredModel>()
  private readonly builtIn: Map<string, RegisteredModel>
  private readonly s

  constructor (private readonly db: DB, private readonly clock: Clock, builtIn: readonly DeviceModel[] = []) {
    migrate(db, 'reports', REPORT_MIGRATIONS)
    this.builtIn = new Map(builtIn.map((m) => [m.model, fromBuiltIn(m)]))
    this.s = {
      all: db.prepare<[], Row>('SELECT * FROM device_models ORDER BY model'),
      get: db.prepare<[string], Row>('SELECT * FROM device_models WHERE model = ?'),
      upsert: db.prepare(`INSERT INTO device_models (model, status, protocol, source, note, registered_by, registered_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT(model) DO UPDATE SET status = excluded.status, protocol = excluded.protocol, source = excluded.source, note = excluded.note, updated_at = excluded.updated_at`),
    }
    for (const r of this.s.all.all()) this.byModel.set(r.model, fromRow(r))
  }

  status (model: string | null | undefined): ValidationStatus {
    if (!model) return 'unknown'
    return (this.byModel.get(model) ?? this.builtIn.get(model))?.status ?? 'unknown'
  }

  get (model: string): RegisteredModel | undefined { return this.byModel.get(model) ?? this.builtIn.get(model) }

  /** Registered models and the built-in ones no operator has registered, by name. */
  list (): RegisteredModel[] {
    const out = new Map(this.builtIn)
    for (const [k, v] of this.byModel) out.set(k, v)
    return [...out.values()].sort((a, b) => a.model.localeCompare(b.model))
  }

  /**
   * Registers a model or changes its entry; `alsoInTransaction` (the audit entry) commits with
   * it or neither does, and the in-memory copy changes only once both are committed.
   * `created`: the model was not registered before.
   */
  put (model: string, entry: DeviceModelEntry, by: string, alsoInTransaction?: (m: RegisteredModel, created: boolean) => void): { model: RegisteredModel, created: boolean } {
    const name = ModelNameSchema.safeParse(model)
    if (!name.success) throw new VitalmeshError('VM_BAD_REQUEST', `model: ${name.error.issues[0]!.message}`)
    const parsed = DeviceModelEntrySchema.safeParse(entry)
    if (!parsed.success) throw new VitalmeshError('VM_BAD_REQUEST', parsed.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; '))
    const e = parsed.data
    const created = !this.byModel.has(model)
    const now = this.clock.now()
    const stored = this.db.transaction(() => {
      this.s.upsert.run(model, e.status, e.protocol ?? null, e.source, e.note ?? null, by, now, now)
      const m = fromRow(this.s.get.get(model)!)
      alsoInTransaction?.(m, created)
      return m
    })()
    this.byModel.set(model, stored)
    return { model: stored, created }
  }
}
