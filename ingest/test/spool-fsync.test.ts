import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { tempDir } from '../../test/helpers/proc.ts'

/**
 * What a spool commit costs the disk, counted where it happens: strace counts the fsync calls of
 * a process that makes N commits (cluster mode's spools commit without one, bench/README.md).
 */
const fixture = join(import.meta.dirname, 'fixtures', 'spool-commits.ts')

function fsyncs (fsync: 'yes' | 'no', commits: number, then = ''): { calls: number, out: { commits: number, head: number, synced: number } } {
  const dir = tempDir()
  const trace = join(dir, 'strace')
  const stdout = execFileSync('strace', ['-f', '-qq', '-c', '-e', 'trace=fsync,fdatasync', '-o', trace, process.execPath, '--import', 'tsx', fixture, join(dir, 's.db'), fsync, String(commits), then], { encoding: 'utf8' })
  // the summary's "total" row: % time, seconds, usecs/call, calls, errors (when any), "total"
  const total = readFileSync(trace, 'utf8').split('\n').find((l) => /\btotal$/.test(l.trim()))
  const calls = total ? Number(total.trim().split(/\s+/)[3]) : 0
  return { calls, out: JSON.parse(stdout.trim().split('\n').pop()!) }
}

describe('spool commits and fsync', () => {
  it('fsyncs every commit by default (a single node\'s PUBACK means on disk), none with fsync: false, and once per sync()', () => {
    const opening = fsyncs('yes', 0).calls // the migrations' and the pragmas' own
    const full = fsyncs('yes', 100)
    expect(full.out.commits).toBe(100)
    expect(full.calls - opening).toBeGreaterThanOrEqual(100)

    const bare = fsyncs('no', 0).calls
    const noSync = fsyncs('no', 100)
    expect(noSync.out.commits).toBe(100)
    expect(noSync.calls - bare).toBeLessThan(5)

    // one sync() makes them all durable: the WAL holding every commit is synced once, and the head is recorded
    const synced = fsyncs('no', 100, 'sync')
    expect(synced.out).toEqual({ commits: 100, head: 100, synced: 100 })
    expect(synced.calls - noSync.calls).toBeGreaterThanOrEqual(1)
    expect(synced.calls - noSync.calls).toBeLessThan(5)
  })
})
