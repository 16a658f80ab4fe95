import { describe, expect, it } from 'vitest'
import { join } from 'node:path'
import { openDatabase, silentLogger, systemClock, VitalmeshError, type DB, type Migration } from '../core/index.ts'
import { tempDir } from './helpers/proc.ts'
import { AUDIT_MIGRATIONS, FOLLOWER_MIGRATIONS, Registry, AuditLog, REGISTRY_MIGRATIONS } from '../registry/index.ts'
import { ALERT_EXPORT_MIGRATIONS, AlertExport, EmbeddedStore, ROLLUP_MIGRATIONS, Rollups, Spool, SPOOL_MIGRATIONS, TELEMETRY_MIGRATIONS } from '../ingest/index.ts'
import { RULE_SET_MIGRATIONS, RuleSetStore } from '../alerting/index.ts'
import { ALERT_MIGRATIONS, AlertStore } from '../alerting/store.ts'
import { Aggregator, FORWARDER_MIGRATIONS, Outbox, OUTBOX_MIGRATIONS, parseWindow } from '../forwarder/index.ts'
import { DEMO_DEVICE_MODELS, DeviceModelCatalogue, REPORT_MIGRATIONS, ReportBook } from '../reports/index.ts'

/** Every component that owns tables in the node's database, constructed as the app does. */
function openAll (db: DB): void {
  const logger = silentLogger()
  const clock = systemClock
  new Registry(db)
  new AuditLog(db, clock)
  const spool = new Spool(db, logger, { deadLetterMax: 10 })
  const target = { query: async () => [], writeLines: async () => {} }
  new Rollups(db, target, clock, logger)
  new AlertExport(db, () => [], target, () => null, logger)
  new RuleSetStore(db)
  new AlertStore(db)
  new Outbox(db, clock, logger, { pollMs: 1000, timeoutMs: 1000, maxBackoffMs: 1000 })
  new Aggregator({ db, spool, clock, logger, windows: [parseWindow('1h')], latenessMs: 1000, retainMs: 1000, region: { id: 'r', level: 'county' }, resident: () => undefined, alertsIn: () => 0, sinks: [] })
  new ReportBook({ db, clock, logger, deviceModel: () => undefined, catalogue: new DeviceModelCatalogue(DEMO_DEVICE_MODELS) })
}

const COMPONENTS: [string, Migration[]][] = [
  ['registry', REGISTRY_MIGRATIONS], ['followers', FOLLOWER_MIGRATIONS], ['audit', AUDIT_MIGRATIONS], ['spool', SPOOL_MIGRATIONS], ['rollups', ROLLUP_MIGRATIONS],
  ['alert-export', ALERT_EXPORT_MIGRATIONS], ['rule-sets', RULE_SET_MIGRATIONS], ['alerts', ALERT_MIGRATIONS],
  ['outbox', OUTBOX_MIGRATIONS], ['forwarder', FORWARDER_MIGRATIONS], ['reports', REPORT_MIGRATIONS],
]

function schema (db: DB): string[] {
  return db.prepare<[], { type: string, name: string, sql: string }>("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' AND name <> 'schema_migrations' ORDER BY type, name").all()
    .map((r) => `${r.type} ${r.name}: ${r.sql}`)
}

function versions (db: DB): Record<string, number> {
  return Object.fromEntries(db.prepare<[], { component: string, v: number }>('SELECT component, max(version) AS v FROM schema_migrations GROUP BY component').all().map((r) => [r.component, r.v]))
}

const LATEST = Object.fromEntries(COMPONENTS.map(([c, steps]) => [c, steps.at(-1)!.version]))

describe('schema migrations of the node database', () => {
  it('a fresh database: every component at its newest version, and a restart applies nothing', () => {
    const db = openDatabase(join(tempDir(), 'fresh.db'))
    openAll(db)
    expect(versions(db)).toEqual(LATEST)
    const before = db.prepare('SELECT * FROM schema_migrations ORDER BY component, version').all()
    openAll(db)
    expect(db.prepare('SELECT * FROM schema_migrations ORDER BY component, version').all()).toEqual(before)
    db.close()
  })

  it('a database made by the constructors before migrations (every table and column there, no versions) upgrades to the same schema, keeping its rows', () => {
    const fresh = openDatabase(join(tempDir(), 'fresh.db'))
    openAll(fresh)
    const old = openDatabase(join(tempDir(), 'old.db'))
    openAll(old)
    old.exec('DROP TABLE schema_migrations')
    old.prepare("INSERT INTO residents (id, language, created_at, birth_year) VALUES ('r1', 'de', 1, 1950)").run()
    openAll(old)
    expect(schema(old)).toEqual(schema(fresh))
    expect(versions(old)).toEqual(LATEST)
    expect(old.prepare('SELECT id, language, birth_year FROM residents').all()).toEqual([{ id: 'r1', language: 'de', birth_year: 1950 }])
    fresh.close(); old.close()
  })

  it('hospitals registered before they chose feeds get the default, reports and alerts (registry step 6)', () => {
    const db = openDatabase(join(tempDir(), 'feeds.db'))
    for (const step of REGISTRY_MIGRATIONS.slice(0, 5)) typeof step.up === 'string' ? db.exec(step.up) : step.up(db)
    db.prepare("INSERT INTO hospitals (id, name, fhir_url, created_at) VALUES ('h-old', 'Old', 'http://h.example/fhir', 1)").run()
    const reg = new Registry(db)
    expect(reg.hospital('h-old')!.feeds).toEqual(['reports', 'alerts'])
    reg.setHospitalFeeds('h-old', ['summaries', 'reports'])
    expect(reg.hospital('h-old')!.feeds).toEqual(['reports', 'summaries'])
    db.close()
  })

  it('a database of an older version still (only the first tables, none of the columns added since) gets those columns', () => {
    const fresh = openDatabase(join(tempDir(), 'fresh.db'))
    openAll(fresh)
    const old = openDatabase(join(tempDir(), 'older.db'))
    for (const [, steps] of COMPONENTS) old.exec(steps[0]!.up as string)
    openAll(old)
    expect(schema(old)).toEqual(schema(fresh))
    fresh.close(); old.close()
  })

  it('refuses to start on a database written by a newer version (a downgrade)', () => {
    const db = openDatabase(join(tempDir(), 'newer.db'))
    openAll(db)
    db.prepare("INSERT INTO schema_migrations (component, version, why, applied_at) VALUES ('alerts', 99, 'from the future', 0)").run()
    let err: unknown
    try { new AlertStore(db) } catch (e) { err = e }
    expect(err).toBeInstanceOf(VitalmeshError)
    expect((err as VitalmeshError).code).toBe('VM_SCHEMA_INVALID')
    expect((err as Error).message).toMatch(/version 99 of alerts/)
    db.close()
  })

  it('the telemetry store in its own file: fresh and a file of before migrations end the same', async () => {
    const a = join(tempDir(), 't.db')
    await new EmbeddedStore(a).close()
    const db = openDatabase(a)
    expect(versions(db)).toEqual({ telemetry: TELEMETRY_MIGRATIONS.at(-1)!.version })
    const freshSchema = schema(db)
    db.exec('DROP TABLE schema_migrations')
    db.close()
    await new EmbeddedStore(a).close()
    const again = openDatabase(a)
    expect(schema(again)).toEqual(freshSchema)
    again.close()
  })
})
