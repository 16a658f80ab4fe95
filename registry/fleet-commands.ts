import { readFileSync, writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { VitalmeshError } from '../core/index.ts'
import { parseDeviceFile } from './device-file.ts'
import type { Fleet } from './fleet.ts'

export const DEVICES_HELP = `  npm run vitalmesh -- devices add --id ID --resident RESIDENT [--model M] [--region COUNTY] [--firmware V]
  npm run vitalmesh -- devices import FILE.csv|FILE.json [--create-residents] [--secrets-out FILE]
  npm run vitalmesh -- devices rotate ID     new secret; the device's sessions end
  npm run vitalmesh -- devices revoke ID     for good; the device's sessions end
  npm run vitalmesh -- devices list [--resident R] [--region COUNTY] [--after ID] [--limit N] [--json]`

export interface Out { log(s: string): void, error(s: string): void }

/**
 * The operator's `devices` commands, on the registry file directly. A running node sees
 * rotations and revocations within its credential poll (fleet.credentialPollMs) and ends
 * the device's sessions; online status here is as of the node's last batched write.
 */
export async function devicesCommand (fleet: Fleet, argv: string[], out: Out): Promise<number> {
  const [sub, ...rest] = argv
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      id: { type: 'string' }, resident: { type: 'string' }, model: { type: 'string' }, region: { type: 'string' }, firmware: { type: 'string' },
      'create-residents': { type: 'boolean' }, 'secrets-out': { type: 'string' },
      after: { type: 'string' }, limit: { type: 'string' }, json: { type: 'boolean' },
    },
  })
  try {
    switch (sub) {
      case 'add': {
        if (!values.id || !values.resident) { out.error('devices add needs --id and --resident'); return 2 }
        const secret = await fleet.add({ id: values.id, residentId: values.resident, model: values.model, region: values.region, firmware: values.firmware })
        out.log(`device ${values.id} registered for resident ${values.resident}\nsecret (shown once): ${secret}`)
        return 0
      }
      case 'import': {
        const file = positionals[0]
        if (!file) { out.error('devices import needs a CSV or JSON file'); return 2 }
        const rows = parseDeviceFile(readFileSync(file, 'utf8'), file.endsWith('.json') || file.endsWith('.jsonl') ? 'json' : undefined)
        const t0 = Date.now()
        const r = await fleet.import(rows, {
          createResidents: values['create-residents'] === true,
          onProgress: (p) => out.error(`imported ${p.done}/${p.total} (${p.created} created, ${p.failed} refused, ${Math.round(p.done / ((Date.now() - t0) / 1000))}/s)`),
        })
        const secretsFile = values['secrets-out'] ?? `${file}.secrets.csv`
        writeFileSync(secretsFile, 'id,secret\n' + r.credentials.map((c) => `${c.id},${c.secret}`).join('\n') + '\n', { mode: 0o600 })
        for (const f of r.failed.slice(0, 20)) out.error(`  row ${f.index + 1} (${f.id}): ${f.message}`)
        if (r.failed.length > 20) out.error(`  ... and ${r.failed.length - 20} more`)
        out.log(`${r.created} devices imported in ${((Date.now() - t0) / 1000).toFixed(1)} s, ${r.failed.length} refused; secrets written to ${secretsFile} (mode 600)`)
        return r.failed.length ? 1 : 0
      }
      case 'rotate': {
        const id = positionals[0] ?? values.id
        if (!id) { out.error('devices rotate needs a device id'); return 2 }
        out.log(`new secret for ${id} (shown once): ${await fleet.rotate(id)}\nits current sessions end within the node's credential poll`)
        return 0
      }
      case 'revoke': {
        const id = positionals[0] ?? values.id
        if (!id) { out.error('devices revoke needs a device id'); return 2 }
        fleet.revoke(id)
        out.log(`device ${id} revoked; its sessions end within the node's credential poll`)
        return 0
      }
      case 'list': {
        const limit = Number(values.limit ?? 100)
        const devices = fleet.list({ residentId: values.resident, region: values.region, afterId: values.after, limit })
        if (values.json) { out.log(JSON.stringify(devices, null, 2)); return 0 }
        out.log(['id', 'resident', 'region', 'model', 'firmware', 'online', 'last seen'].join('\t'))
        for (const d of devices) {
          out.log([d.id, d.residentId, d.region ?? '-', d.model ?? '-', d.firmware ?? '-', d.online ? 'online' : 'offline', d.lastSeenAt ? new Date(d.lastSeenAt).toISOString() : 'never'].join('\t'))
        }
        if (devices.length === limit) out.error(`more: --after ${devices[devices.length - 1]!.id}`)
        return 0
      }
      default:
        out.error(`unknown devices command "${sub ?? ''}"\n${DEVICES_HELP}`)
        return 2
    }
  } catch (e) {
    if (e instanceof VitalmeshError) { out.error(`${e.code}: ${e.message}`); return 1 }
    throw e
  }
}
