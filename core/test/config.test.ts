import { describe, expect, it } from 'vitest'
import { writeFileSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadConfig } from '../index.ts'

describe('configuration', () => {
  it('has sane defaults', () => {
    const c = loadConfig({})
    expect(c.mqtt.port).toBe(1883)
    expect(c.http.port).toBe(8080)
    expect(c.mqtt.maxPayloadBytes).toBe(65536)
    expect(c.dataDir).toBe('./data')
    expect(c.demo.enabled).toBe(true)
  })

  it('reads the environment and names the bad setting and variable', () => {
    expect(loadConfig({ VITALMESH_MQTT_PORT: '1884', VITALMESH_DEMO: 'false' })).toMatchObject({ mqtt: { port: 1884 }, demo: { enabled: false } })
    expect(() => loadConfig({ VITALMESH_MQTT_PORT: 'abc' })).toThrow(/mqtt\.port.*VITALMESH_MQTT_PORT="abc"/)
    expect(() => loadConfig({ VITALMESH_HTTP_PORT: '70000' })).toThrow(/http\.port/)
    expect(() => loadConfig({ VITALMESH_LOG_LEVEL: 'loud' })).toThrow(/log\.level/)
  })

  it('reads a JSON file, which the environment overrides, and refuses unknown settings', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vm-conf-'))
    const file = join(dir, 'c.json')
    writeFileSync(file, JSON.stringify({ mqtt: { port: 2000 }, http: { port: 2001 } }))
    expect(loadConfig({ VITALMESH_CONFIG: file, VITALMESH_HTTP_PORT: '3000' })).toMatchObject({ mqtt: { port: 2000 }, http: { port: 3000 } })
    writeFileSync(file, JSON.stringify({ mqtt: { prot: 2000 } }))
    expect(() => loadConfig({ VITALMESH_CONFIG: file })).toThrow(/prot/)
    expect(() => loadConfig({ VITALMESH_CONFIG: join(dir, 'missing.json') })).toThrow(/VITALMESH_CONFIG/)
  })
})
