import { describe, expect, it } from 'vitest'
import { mayPublish, maySubscribe, clientIdMatches } from '../index.ts'

describe('topic ACL', () => {
  const dev = { kind: 'device' as const, id: 'd1' }
  const res = { kind: 'resident' as const, id: 'r1' }
  it('lets a device publish only its own vitals', () => {
    expect(mayPublish(dev, 'vitals/d1')).toBe(true)
    expect(mayPublish(dev, 'vitals/d2')).toBe(false)
    expect(mayPublish(dev, 'vitals/d1/x')).toBe(false)
    expect(mayPublish(dev, '$SYS/x')).toBe(false)
    expect(mayPublish(res, 'vitals/d1')).toBe(false)
  })
  it('keeps subscriptions inside the identity\'s subtree', () => {
    expect(maySubscribe(res, 'alerts/r1')).toBe(true)
    expect(maySubscribe(res, 'alerts/r1/#')).toBe(true)
    expect(maySubscribe(res, 'alerts/r10')).toBe(false)
    expect(maySubscribe(res, 'alerts/r1#')).toBe(false)
    expect(maySubscribe(res, '#')).toBe(false)
    expect(maySubscribe(dev, 'devices/d1/#')).toBe(true)
    expect(maySubscribe(dev, 'devices/d1x/#')).toBe(false)
    expect(maySubscribe(dev, 'standards/#')).toBe(true)
    expect(maySubscribe(dev, '$SYS/#')).toBe(false)
  })
  it('binds the clientId to the identity', () => {
    expect(clientIdMatches('d1', 'd1')).toBe(true)
    expect(clientIdMatches('d1:phone', 'd1')).toBe(true)
    expect(clientIdMatches('d1:', 'd1')).toBe(false)
    expect(clientIdMatches('d2', 'd1')).toBe(false)
    expect(clientIdMatches('d1x', 'd1')).toBe(false)
  })
})
