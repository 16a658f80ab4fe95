import { describe, expect, it } from 'vitest'
import { addDays, isTimeZone, localDate, localDaysBetween, localMinuteOfDay, offsetMs, zonedTime } from '../localtime.ts'

const iso = (t: number): string => new Date(t).toISOString()
const at = (s: string): number => Date.parse(s)

describe('local time from Intl', () => {
  it('Asia/Shanghai is UTC+8 all year, and its days start at 16:00 UTC', () => {
    expect(offsetMs(at('2025-01-15T00:00:00Z'), 'Asia/Shanghai')).toBe(8 * 3600_000)
    expect(offsetMs(at('2025-07-15T00:00:00Z'), 'Asia/Shanghai')).toBe(8 * 3600_000)
    expect(localDate(at('2025-06-01T15:59:59Z'), 'Asia/Shanghai')).toBe('2025-06-01')
    expect(localDate(at('2025-06-01T16:00:00Z'), 'Asia/Shanghai')).toBe('2025-06-02')
    expect(iso(zonedTime('2025-06-02', 0, 'Asia/Shanghai'))).toBe('2025-06-01T16:00:00.000Z')
    expect(iso(zonedTime('2025-06-01', 1440, 'Asia/Shanghai'))).toBe('2025-06-01T16:00:00.000Z')
    expect(localMinuteOfDay(at('2025-06-01T15:30:00Z'), 'Asia/Shanghai')).toBe(23 * 60 + 30)
  })

  it('Europe/Berlin spring forward (2025-03-30): a 23-hour day, 02:30 does not exist', () => {
    expect(iso(zonedTime('2025-03-30', 0, 'Europe/Berlin'))).toBe('2025-03-29T23:00:00.000Z')
    expect(iso(zonedTime('2025-03-30', 1440, 'Europe/Berlin'))).toBe('2025-03-30T22:00:00.000Z')
    expect(iso(zonedTime('2025-03-30', 150, 'Europe/Berlin'))).toBe('2025-03-30T01:00:00.000Z') // 02:30 → 03:00 CEST
    expect(iso(zonedTime('2025-03-30', 180, 'Europe/Berlin'))).toBe('2025-03-30T01:00:00.000Z')
    expect(iso(zonedTime('2025-03-30', 7 * 60, 'Europe/Berlin'))).toBe('2025-03-30T05:00:00.000Z')
    expect(iso(zonedTime('2025-03-29', 7 * 60, 'Europe/Berlin'))).toBe('2025-03-29T06:00:00.000Z')
    expect(localMinuteOfDay(at('2025-03-30T00:59:00Z'), 'Europe/Berlin')).toBe(60 + 59)
    expect(localMinuteOfDay(at('2025-03-30T01:00:00Z'), 'Europe/Berlin')).toBe(3 * 60)
  })

  it('Europe/Berlin fall back (2025-10-26): a 25-hour day, 02:30 maps to its first occurrence', () => {
    expect(iso(zonedTime('2025-10-26', 0, 'Europe/Berlin'))).toBe('2025-10-25T22:00:00.000Z')
    expect(iso(zonedTime('2025-10-26', 1440, 'Europe/Berlin'))).toBe('2025-10-26T23:00:00.000Z')
    expect(iso(zonedTime('2025-10-26', 150, 'Europe/Berlin'))).toBe('2025-10-26T00:30:00.000Z')
    expect(localDate(at('2025-10-26T22:59:00Z'), 'Europe/Berlin')).toBe('2025-10-26')
    expect(localDate(at('2025-10-26T23:00:00Z'), 'Europe/Berlin')).toBe('2025-10-27')
  })

  it('days across month and year ends, and the days an interval touches', () => {
    expect(addDays('2024-12-31', 1)).toBe('2025-01-01')
    expect(addDays('2024-02-28', 1)).toBe('2024-02-29')
    expect(addDays('2025-03-01', -1)).toBe('2025-02-28')
    expect(localDaysBetween(at('2025-03-29T12:00:00Z'), at('2025-03-31T00:00:00Z'), 'Europe/Berlin')).toEqual(['2025-03-29', '2025-03-30', '2025-03-31'])
  })

  it('knows which zones exist', () => {
    expect(isTimeZone('Europe/Berlin')).toBe(true)
    expect(isTimeZone('Asia/Shanghai')).toBe(true)
    expect(isTimeZone('Mars/Olympus_Mons')).toBe(false)
  })
})
