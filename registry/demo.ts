import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import type { Registry } from './registry.ts'

export interface DemoDevice { deviceId: string, residentId: string, secret: string }
export interface DemoCredentials {
  resident: { id: string, password: string }
  device: DemoDevice
  /** more devices, each bound to its own resident, for the simulated fleet */
  fleet: DemoDevice[]
  apiKeys: { operator: string, resident: string }
}

export const DEMO_RESIDENT = 'demo-resident'
export const DEMO_DEVICE = 'demo-device'
const FLEET_SIZE = 99

/**
 * Creates the demo resident, device, fleet and API keys on first start and writes their
 * credentials to a file readable only by the owner (secrets never go to the log).
 * Later starts reuse the file.
 */
export async function ensureDemo (registry: Registry, file: string): Promise<{ created: boolean, credentials: DemoCredentials }> {
  if (registry.resident(DEMO_RESIDENT) && existsSync(file)) {
    return { created: false, credentials: JSON.parse(readFileSync(file, 'utf8')) as DemoCredentials }
  }
  if (registry.resident(DEMO_RESIDENT)) {
    throw new Error(`the demo resident exists but ${file} is missing; remove the data directory to recreate the demo`)
  }
  const password = (await registry.addResident({ id: DEMO_RESIDENT, name: 'Demo Resident', region: 'demo-county' }))!
  const deviceSecret = await registry.addDevice({ id: DEMO_DEVICE, residentId: DEMO_RESIDENT, model: 'demo-cuff' })
  const fleet: DemoDevice[] = []
  for (let i = 1; i <= FLEET_SIZE; i++) {
    const n = String(i).padStart(3, '0')
    const residentId = `demo-res-${n}`
    await registry.addResident({ id: residentId, region: 'demo-county' }, false)
    const deviceId = `demo-dev-${n}`
    fleet.push({ deviceId, residentId, secret: await registry.addDevice({ id: deviceId, residentId, model: 'demo-watch' }) })
  }
  const credentials: DemoCredentials = {
    resident: { id: DEMO_RESIDENT, password },
    device: { deviceId: DEMO_DEVICE, residentId: DEMO_RESIDENT, secret: deviceSecret },
    fleet,
    apiKeys: {
      operator: registry.addApiKey('operator', null, 'demo operator'),
      resident: registry.addApiKey('resident', DEMO_RESIDENT, 'demo resident'),
    },
  }
  writeFileSync(file, JSON.stringify(credentials, null, 2) + '\n', { mode: 0o600 })
  return { created: true, credentials }
}
