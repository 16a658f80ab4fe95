import { createHash, createHmac } from 'node:crypto'
import type { Clock } from '../core/index.ts'
import type { ClosedWindow, SummarySink } from './aggregator.ts'
import type { OutboxEntry } from './outbox.ts'
import { alertFlagEntry, measurementEntries, summaryEntries, transactionBundle, type CriticalAlert, type MeasuredReading } from './fhir.ts'
import { researchPayload } from './research.ts'

type Enqueue = (e: OutboxEntry) => void
/** records an export in the audit trail (inside the transaction that enqueues it) */
type Audit = (action: string, subject: string, detail: unknown) => void

export function signedHeaders (auth: 'bearer' | 'hmac', secret: string | null, body: string): Record<string, string> {
  if (!secret) return {}
  if (auth === 'hmac') return { 'x-vitalmesh-signature': `sha256=${createHmac('sha256', secret).update(body).digest('hex')}` }
  return { authorization: `Bearer ${secret}` }
}

export interface HospitalTarget {
  id: string, fhirUrl: string | null, fhirAuth: 'bearer' | 'hmac', fhirSecret: string | null
  /** what it chose to receive (registry HOSPITAL_FEEDS): each sink sends only its own kind */
  feeds: readonly string[]
  /** entries per transaction Bundle its server takes, when fewer than the node's `maxEntries` (null or absent: the node's) */
  fhirMaxEntries?: number | null
}

/** Entries per Bundle for a hospital: its own bound, else the node's. */
const entriesFor = (h: HospitalTarget, node: number): number => Math.max(1, h.fhirMaxEntries ?? node)

/**
 * Hospitals that chose the `summaries` feed: every closed window's changed resident summaries,
 * as FHIR R4 transaction Bundles to each hospital's FHIR base URL, for its patients only.
 * `sender` (cluster mode: this node's name in the cluster) goes into the Bundle's id and
 * Idempotency-Key: every node of a cluster closes the same windows, for the residents of its
 * own partitions, and numbers their versions itself. Without it, the Bundles of two nodes for
 * one window had one key, and a hospital that applies a key once dropped all but the first.
 * The Observations' identifiers stay the region's, as on a single node.
 */
export function hospitalSink (d: { node: string, sender?: string, maxEntries: number, clock: Clock, hospitals(): HospitalTarget[], enqueue: Enqueue, audit: Audit }): SummarySink {
  // as 8 hex digits of its hash: a FHIR id has letters, digits, '-' and '.' only, and at most 64 of them
  const from = d.sender ? `${d.node}-${createHash('sha256').update(d.sender).digest('hex').slice(0, 8)}` : d.node
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
        if (!h.fhirUrl || !h.feeds.includes('summaries') || !entries?.length) continue
        const max = entriesFor(h, d.maxEntries)
        for (let i = 0, chunk = 0; i < entries.length; i += max, chunk++) {
          const id = `${from}-${h.id}-${w.kind}-${w.start}-v${w.version}-${chunk}`
          const body = JSON.stringify(transactionBundle(entries.slice(i, i + max), id, d.clock.now()))
          d.enqueue({ sink: 'hospital-fhir', url: h.fhirUrl, headers: { ...signedHeaders(h.fhirAuth, h.fhirSecret, body), 'content-type': 'application/fhir+json' }, body, idempotencyKey: `fhir:${id}` })
          d.audit('export.fhir', h.id, { bundle: id, observations: Math.min(max, entries.length - i), residents: [...new Set(entries.slice(i, i + max).map((e) => (e.resource.subject as { identifier: { value: string } }).identifier.value))] })
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

/**
 * Hospitals that chose the `alerts` feed: each live critical alert of their patients as a FHIR
 * Flag (forwarder/fhir.ts alertFlagEntry), when it becomes critical, is escalated and ends. The
 * JSON escalation webhook (alerting) is unchanged beside it.
 */
export function alertFlagSink (d: { node: string, clock: Clock, hospital(id: string): HospitalTarget | undefined, enqueue: Enqueue, audit: Audit }): (a: CriticalAlert, change: 'critical' | 'escalated' | 'ended', hospitalId: string) => void {
  return (a, change, hospitalId) => {
    const h = d.hospital(hospitalId)
    if (!h?.fhirUrl || !h.feeds.includes('alerts')) return
    const id = `${d.node}-${h.id}-alert-${a.id}-${change}`
    const body = JSON.stringify(transactionBundle([alertFlagEntry(a, change, d.node)], id, d.clock.now()))
    d.enqueue({ sink: 'hospital-fhir', url: h.fhirUrl, headers: { ...signedHeaders(h.fhirAuth, h.fhirSecret, body), 'content-type': 'application/fhir+json' }, body, idempotencyKey: `fhir:${id}` })
    d.audit('export.fhir-alert', h.id, { bundle: id, alert: a.id, change, resident: a.residentId })
  }
}

/**
 * Hospitals that chose the `measurements` feed: every reading of their patients as an
 * Observation (forwarder/fhir.ts measurementEntries), in transaction Bundles of at most
 * `maxEntries` entries (a Bundle carries the Devices its Observations refer to). A spool
 * consumer: it enqueues in the transaction that moves its cursor, so each reading is
 * enqueued once; a re-delivery of a Bundle creates nothing (conditional creates).
 */
export function measurementSink (d: { node: string, maxEntries: number, clock: Clock, hospitals(): HospitalTarget[], hospitalOf(residentId: string): string | null | undefined, enqueue: Enqueue, audit: Audit }): (rows: readonly (MeasuredReading & { id?: number })[]) => void {
  return (rows) => {
    const wanted = new Map(d.hospitals().filter((h) => h.fhirUrl && h.feeds.includes('measurements')).map((h) => [h.id, h]))
    if (!wanted.size) return
    const byHospital = new Map<string, MeasuredReading[]>()
    for (const r of rows) {
      const h = d.hospitalOf(r.residentId)
      if (!h || !wanted.has(h)) continue
      const list = byHospital.get(h) ?? []
      list.push(r)
      byHospital.set(h, list)
    }
    for (const [hid, readings] of byHospital) {
      const h = wanted.get(hid)!
      // greedy chunks: a reading costs one entry, plus one for its Device the first time in a Bundle
      const chunks: MeasuredReading[][] = []
      let cur: MeasuredReading[] = []; let devices = new Set<string>()
      const max = Math.max(2, entriesFor(h, d.maxEntries))
      for (const r of readings) {
        const cost = 1 + (devices.has(r.deviceId) ? 0 : 1)
        if (cur.length && cur.length + devices.size + cost > max) { chunks.push(cur); cur = []; devices = new Set() }
        cur.push(r); devices.add(r.deviceId)
      }
      if (cur.length) chunks.push(cur)
      for (const c of chunks) {
        const entries = measurementEntries(c)
        if (!entries.length) continue
        const first = c[0]!; const last = c.at(-1)!
        const id = `${d.node}-${h.id}-readings-${first.deviceId}-${first.seq}-${last.deviceId}-${last.seq}-${c.length}`
        const body = JSON.stringify(transactionBundle(entries, id, d.clock.now()))
        d.enqueue({ sink: 'hospital-fhir', url: h.fhirUrl!, headers: { ...signedHeaders(h.fhirAuth, h.fhirSecret, body), 'content-type': 'application/fhir+json' }, body, idempotencyKey: `fhir:${id}` })
        d.audit('export.fhir-measurements', h.id, { bundle: id, observations: c.length, residents: [...new Set(c.map((r) => r.residentId))] })
      }
    }
  }
}
