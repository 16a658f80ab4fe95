import { createHmac } from 'node:crypto'
import type { Clock } from '../core/index.ts'
import type { ClosedWindow, SummarySink } from './aggregator.ts'
import type { OutboxEntry } from './outbox.ts'
import { summaryEntries, transactionBundle } from './fhir.ts'
import { researchPayload } from './research.ts'

type Enqueue = (e: OutboxEntry) => void
/** records an export in the audit trail (inside the transaction that enqueues it) */
type Audit = (action: string, subject: string, detail: unknown) => void

export function signedHeaders (auth: 'bearer' | 'hmac', secret: string | null, body: string): Record<string, string> {
  if (!secret) return {}
  if (auth === 'hmac') return { 'x-vitalmesh-signature': `sha256=${createHmac('sha256', secret).update(body).digest('hex')}` }
  return { authorization: `Bearer ${secret}` }
}

export interface HospitalTarget { id: string, fhirUrl: string | null, fhirAuth: 'bearer' | 'hmac', fhirSecret: string | null }

/**
 * Hospitals: every closed window's changed resident summaries, as FHIR R4 transaction
 * Bundles to each hospital's FHIR base URL, for the residents it cares for only.
 */
export function hospitalSink (d: { node: string, maxEntries: number, clock: Clock, hospitals(): HospitalTarget[], enqueue: Enqueue, audit: Audit }): SummarySink {
  return {
    name: 'hospital-fhir',
    emit (w: ClosedWindow) {
      const byHospital = new Map<string, ReturnType<typeof summaryEntries>>()
      for (const s of w.changed) {
        const h = w.facts(s.residentId)?.hospitalId
        if (!h) continue
        const list = byHospital.get(h) ?? []
        list.push(...summaryEntries(s, d.node))
        byHospital.set(h, list)
      }
      for (const h of d.hospitals()) {
        const entries = byHospital.get(h.id)
        if (!h.fhirUrl || !entries?.length) continue
        for (let i = 0, chunk = 0; i < entries.length; i += d.maxEntries, chunk++) {
          const id = `${d.node}-${h.id}-${w.kind}-${w.start}-v${w.version}-${chunk}`
          const body = JSON.stringify(transactionBundle(entries.slice(i, i + d.maxEntries), id, d.clock.now()))
          d.enqueue({ sink: 'hospital-fhir', url: h.fhirUrl, headers: { ...signedHeaders(h.fhirAuth, h.fhirSecret, body), 'content-type': 'application/fhir+json' }, body, idempotencyKey: `fhir:${id}` })
          d.audit('export.fhir', h.id, { bundle: id, observations: Math.min(d.maxEntries, entries.length - i), residents: [...new Set(entries.slice(i, i + d.maxEntries).map((e) => (e.resource.subject as { identifier: { value: string } }).identifier.value))] })
        }
      }
    },
  }
}

export interface InstitutionTarget { id: string, pushUrl: string | null, token: string | null, pseudonymKey: string }

/** Research institutions: consented, de-identified, k-suppressed aggregates (forwarder/research.ts). */
export function researchSink (d: { k: number, institutions(): InstitutionTarget[], enqueue: Enqueue, audit: Audit }): SummarySink {
  return {
    name: 'research',
    emit (w: ClosedWindow) {
      for (const inst of d.institutions()) {
        if (!inst.pushUrl) continue
        const payload = researchPayload(w, { id: inst.id, pseudonymKey: inst.pseudonymKey }, d.k)
        const body = JSON.stringify(payload)
        d.audit('export.research', inst.id, { window: payload.window, version: payload.version, cells: payload.cells.length, suppressedCells: payload.suppressedCells })
        d.enqueue({ sink: 'research', url: inst.pushUrl, headers: inst.token ? { authorization: `Bearer ${inst.token}` } : {}, body, idempotencyKey: `research:${inst.id}:${w.kind}:${w.start}:v${w.version}` })
      }
    },
  }
}

/** The parent region (county → city → province): the mergeable roll-up of this node's region. */
export function parentSink (d: { parentUrl: string, token: string | null, enqueue: Enqueue, audit: Audit }): SummarySink {
  return {
    name: 'parent-region',
    emit (w: ClosedWindow) {
      const body = JSON.stringify(w.rollup)
      d.audit('export.rollup', new URL(d.parentUrl).origin, { window: w.rollup.window, version: w.version, residents: w.rollup.residents })
      d.enqueue({ sink: 'parent-region', url: d.parentUrl, headers: d.token ? { authorization: `Bearer ${d.token}` } : {}, body, idempotencyKey: `rollup:${w.rollup.region}:${w.kind}:${w.start}:v${w.version}` })
    },
  }
}
