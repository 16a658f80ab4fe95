import { signedHeaders, type HospitalTarget, type OutboxEntry } from '../forwarder/index.ts'
import { reportBundles, type FinishedReport, type ReportBundleOptions } from './fhir.ts'

export interface ReportSinkDeps {
  node: string
  hospitals(): HospitalTarget[]
  /** the hospital caring for a resident */
  hospitalOf(residentId: string): string | null | undefined
  enqueue(e: OutboxEntry): void
  /** records an export in the audit trail (inside the transaction that enqueues it) */
  audit(action: string, subject: string, detail: unknown): void
  readings?: boolean
  maxEntries?: number
}

/**
 * Finished and amended reports to the resident's hospital, through the durable outbox like
 * the window summaries (forwarder hospitalSink): FHIR transaction Bundles to its FHIR base
 * URL, signed the same way. The idempotency key is the Bundle id, stable per report version.
 */
export function reportSink (d: ReportSinkDeps): (reports: readonly FinishedReport[]) => number {
  const o: ReportBundleOptions = { node: d.node, readings: d.readings ?? true, ...(d.maxEntries ? { maxEntries: d.maxEntries } : {}) }
  return (reports) => {
    if (!reports.length) return 0
    const hospitals = new Map(d.hospitals().map((h) => [h.id, h]))
    let n = 0
    for (const r of reports) {
      const h = hospitals.get(d.hospitalOf(r.residentId) ?? '')
      if (!h?.fhirUrl || !h.feeds.includes('reports')) continue
      const bundles = reportBundles(r, o)
      for (const b of bundles) {
        const body = JSON.stringify(b)
        d.enqueue({ sink: 'hospital-fhir', url: h.fhirUrl, headers: { ...signedHeaders(h.fhirAuth, h.fhirSecret, body), 'content-type': 'application/fhir+json' }, body, idempotencyKey: `fhir:${String(b.id)}` })
        n++
      }
      d.audit('export.fhir-report', h.id, { report: r.runId, version: r.version, protocol: r.result.protocol, resident: r.residentId, bundles: bundles.length })
    }
    return n
  }
}
