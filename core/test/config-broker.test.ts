import { describe, expect, it } from 'vitest'
import { loadConfig } from '../index.ts'

describe('broker settings', () => {
  it('reads the protections, TLS, cluster and metrics settings from the environment', () => {
    const c = loadConfig({
      VITALMESH_PUBLISH_RATE: '2.5', VITALMESH_MAX_CONNECTIONS_PER_ADDRESS: '0', VITALMESH_TLS_PORT: '8883', VITALMESH_TLS_CERT: '/c.pem',
      VITALMESH_TLS_KEY: '/k.pem', VITALMESH_TLS_REQUIRE_CLIENT_CERT: 'yes', VITALMESH_REDIS_URL: 'redis://10.0.0.5:6379/2', VITALMESH_METRICS_REQUIRE_API_KEY: 'true',
    })
    expect(c.mqtt).toMatchObject({ publishRatePerS: 2.5, publishBurst: 100, maxConnectionsPerAddress: 0, keepaliveLimitS: 1200 })
    expect(c.tls).toMatchObject({ port: 8883, cert: '/c.pem', key: '/k.pem', requireClientCert: true })
    expect(c.cluster.redisUrl).toBe('redis://10.0.0.5:6379/2')
    expect(c.metrics.requireApiKey).toBe(true)
  })

  it('refuses a TLS port without certificate and key, and a Redis URL that is not one, naming the setting', () => {
    expect(() => loadConfig({ VITALMESH_TLS_PORT: '8883' })).toThrow(/setting "tls".*needs tls.cert and tls.key/)
    expect(() => loadConfig({ VITALMESH_REDIS_URL: 'localhost:6379' })).toThrow(/setting "cluster.redisUrl" \(from VITALMESH_REDIS_URL="localhost:6379"\)/)
  })
})
