import { describe, expect, it } from 'vitest'
import { apiForVersion, pointTime, retryAfterMs, toLine } from '../index.ts'

describe('InfluxDB schema and protocol details', () => {
  it('writes a reading as one line: tags device, model, region, resident; seq as an integer field; ns time from ms and seq', () => {
    expect(toLine({ deviceId: 'dev 1', residentId: 'r,1', seq: 1_000_042, ts: 1795917806779, hr: 72, sys: 121.5, dia: 79, motion: false, confidence: 0.9, activity: 'rest' }, { region: 'county=a', model: 'cuff' }))
      .toBe('vitals,device=dev\\ 1,model=cuff,region=county\\=a,resident=r\\,1 seq=1000042i,hr=72.0,sys=121.5,dia=79.0,motion=false,confidence=0.9,activity="rest" 1795917806779000042')
  })

  it('gives a re-sent (device, seq) the same timestamp and two seqs in one millisecond different ones', () => {
    expect(pointTime(1000, 7)).toBe(pointTime(1000, 7))
    expect(pointTime(1000, 7)).not.toBe(pointTime(1000, 8))
    expect(BigInt(pointTime(1000, 999_999)) < BigInt(pointTime(1001, 0))).toBe(true)
  })

  it('chooses the write API from X-Influxdb-Version: v2 from 1.8 on', () => {
    expect(apiForVersion('1.6.7~rc0')).toBe('v1')
    expect(apiForVersion('1.7.11')).toBe('v1')
    expect(apiForVersion('1.8.10')).toBe('v2')
    expect(apiForVersion('v2.7.11')).toBe('v2')
    expect(apiForVersion('3.0.0')).toBe('v2')
    expect(apiForVersion(undefined)).toBe('v1')
  })

  it('reads Retry-After as seconds, or as an HTTP date', () => {
    expect(retryAfterMs('2')).toBe(2000)
    expect(retryAfterMs('0.5')).toBe(500)
    expect(retryAfterMs(new Date(11_000).toUTCString(), 1_000)).toBe(10_000)
    expect(retryAfterMs(undefined)).toBeUndefined()
    expect(retryAfterMs('soon')).toBeUndefined()
  })
})
