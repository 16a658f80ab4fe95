import { describe, expect, it } from 'vitest'
import { ManualClock, openDatabase } from '../../core/index.ts'
import { Fleet, Registry, parseDeviceFile } from '../index.ts'

function fleet () {
  const clock = new ManualClock(1_000_000)
  const registry = new Registry(openDatabase(':memory:'))
  return { clock, registry, fleet: new Fleet(registry, clock) }
}

describe('fleet', () => {
  it('parses CSV (with a quoted cell and snake_case header) and JSON lines alike', () => {
    const csv = 'device_id,resident_id,model,county,firmware_version\nd1,r1,"cuff, v2",c-01,1.2.3\nd2,r1,,c-01,\n'
    expect(parseDeviceFile(csv)).toEqual([
      { id: 'd1', residentId: 'r1', model: 'cuff, v2', region: 'c-01', firmware: '1.2.3' },
      { id: 'd2', residentId: 'r1', region: 'c-01' },
    ])
    expect(parseDeviceFile('{"id":"d1","residentId":"r1","firmware":"2"}\n{"id":"d2","residentId":"r1"}\n')).toEqual([
      { id: 'd1', residentId: 'r1', firmware: '2' }, { id: 'd2', residentId: 'r1' },
    ])
    expect(() => parseDeviceFile('name,x\na,b\n')).toThrow(/id and residentId/)
  })

  it('imports in chunks with progress, refuses bad rows with a reason, and every created device can log in', async () => {
    const { fleet: f, registry } = fleet()
    await registry.addResident({ id: 'r-known', region: 'c-07' }, false)
    const rows = Array.from({ length: 2500 }, (_, i) => ({ id: `dev-${i}`, residentId: i % 2 ? 'r-known' : `r-${i}`, model: 'watch', firmware: '1.0' }))
    rows.push({ id: 'dev-1', residentId: 'r-known', model: 'dup', firmware: '1' }, { id: 'bad/id', residentId: 'r-known', model: 'x', firmware: '1' })
    const progress: number[] = []
    const noCreate = await f.import(rows.slice(0, 4), {})
    expect(noCreate.created).toBe(2)
    expect(noCreate.failed.map((x) => x.message)).toEqual([expect.stringMatching(/resident "r-0" is not registered/), expect.stringMatching(/resident "r-2" is not registered/)])
    const r = await f.import(rows, { createResidents: true, onProgress: (p) => progress.push(p.done) })
    expect(progress).toEqual([1000, 2000, 2502])
    expect(r.created).toBe(2498)
    expect(r.failed.map((x) => x.id)).toEqual(['dev-1', 'dev-3', 'dev-1', 'bad/id'])
    expect(f.activeCount()).toBe(2500)
    const c = r.credentials.find((x) => x.id === 'dev-2000')!
    expect(await registry.authenticate('dev-2000', c.secret)).toMatchObject({ kind: 'device', id: 'dev-2000', residentId: 'r-2000' })
    expect(f.get('dev-1')).toMatchObject({ residentId: 'r-known', region: 'c-07', model: 'watch', firmware: '1.0', online: false, lastSeenAt: null })
  })

  it('rotates and revokes: the old secret stops working, and each change is reported once to the poll', async () => {
    const { fleet: f, registry } = fleet()
    await registry.addResident({ id: 'r1', region: 'c-01' }, false)
    const s1 = await f.add({ id: 'd1', residentId: 'r1', firmware: '3.1' })
    const cursor = f.latestChange()
    const s2 = await f.rotate('d1')
    expect(await registry.authenticate('d1', s1)).toBeUndefined()
    expect(await registry.authenticate('d1', s2)).toMatchObject({ id: 'd1' })
    const changes = f.changedSince(cursor)
    expect(changes).toEqual([{ id: 'd1', at: expect.any(Number), revoked: false }])
    f.revoke('d1')
    const after = f.changedSince(changes[0]!.at)
    expect(after).toEqual([{ id: 'd1', at: expect.any(Number), revoked: true }])
    expect(after[0]!.at).toBeGreaterThan(changes[0]!.at)
    expect(await registry.authenticate('d1', s2)).toBeUndefined()
    expect(registry.authenticateCertificate('d1')).toBeUndefined()
    await expect(f.rotate('d1')).rejects.toThrow(/revoked/)
    expect(f.list({ limit: 10 })).toEqual([])
    expect(f.list({ limit: 10, includeRevoked: true }).map((d) => d.revoked)).toEqual([true])
  })

  it('lists by resident and region, pages by id, and records last-seen and online in one batch', async () => {
    const { fleet: f, registry } = fleet()
    await registry.addResident({ id: 'r1', region: 'c-01' }, false)
    await registry.addResident({ id: 'r2', region: 'c-02' }, false)
    for (const [id, r] of [['a', 'r1'], ['b', 'r2'], ['c', 'r1'], ['d', 'r2']] as const) await f.add({ id, residentId: r })
    expect(f.list({ limit: 2 }).map((d) => d.id)).toEqual(['a', 'b'])
    expect(f.list({ limit: 2, afterId: 'b' }).map((d) => d.id)).toEqual(['c', 'd'])
    expect(f.list({ limit: 9, region: 'c-02' }).map((d) => d.id)).toEqual(['b', 'd'])
    expect(f.list({ limit: 9, residentId: 'r1' }).map((d) => d.id)).toEqual(['a', 'c'])
    f.recordLastSeen([['a', 5000, true], ['b', 6000, false]])
    f.recordLastSeen([['a', 4000, false]]) // an older time never moves last-seen back
    expect(f.get('a')).toMatchObject({ lastSeenAt: 5000, online: false })
    expect(f.get('b')).toMatchObject({ lastSeenAt: 6000, online: false })
  })
})
