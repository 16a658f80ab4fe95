import { VitalmeshError } from '../core/index.ts'
import type { NewDevice } from './registry.ts'

const FIELD: Record<string, keyof NewDevice> = {
  id: 'id', device: 'id', deviceid: 'id', device_id: 'id',
  residentid: 'residentId', resident_id: 'residentId', resident: 'residentId',
  model: 'model', region: 'region', county: 'region', region_code: 'region', firmware: 'firmware', firmware_version: 'firmware', fw: 'firmware',
}

function splitCsvLine (line: string): string[] {
  const out: string[] = []
  let cur = ''
  let quoted = false
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') { cur += '"'; i++ } else if (c === '"') quoted = false
      else cur += c
    } else if (c === '"') quoted = true
    else if (c === ',') { out.push(cur); cur = '' } else cur += c
  }
  out.push(cur)
  return out.map((s) => s.trim())
}

/**
 * Reads a device list for `devices import`: CSV with a header row (id, residentId, model,
 * region, firmware; snake_case accepted), a JSON array, or JSON lines.
 */
export function parseDeviceFile (text: string, format?: 'csv' | 'json'): NewDevice[] {
  const trimmed = text.trimStart()
  const fmt = format ?? (trimmed.startsWith('[') || trimmed.startsWith('{') ? 'json' : 'csv')
  if (fmt === 'json') {
    try {
      const rows = trimmed.startsWith('[') ? JSON.parse(trimmed) as unknown[] : trimmed.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as unknown)
      return rows.map((r) => normalise(r as Record<string, unknown>))
    } catch (e) {
      throw new VitalmeshError('VM_BAD_REQUEST', `the device list is not valid JSON (an array, or one object per line): ${(e as Error).message}`)
    }
  }
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '')
  const header = splitCsvLine(lines[0] ?? '').map((h) => h.toLowerCase())
  const fields = header.map((h) => FIELD[h])
  if (!fields.includes('id') || !fields.includes('residentId')) {
    throw new VitalmeshError('VM_BAD_REQUEST', `the CSV header must name at least the columns id and residentId; got "${lines[0] ?? ''}"`)
  }
  return lines.slice(1).map((line) => {
    const cells = splitCsvLine(line)
    const row: Record<string, string> = {}
    fields.forEach((f, i) => { if (f && cells[i]) row[f] = cells[i]! })
    return row as unknown as NewDevice
  })
}

function normalise (r: Record<string, unknown>): NewDevice {
  const row: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(r)) {
    const f = FIELD[k.toLowerCase()]
    if (f && v !== null && v !== undefined && v !== '') row[f] = String(v)
  }
  return row as unknown as NewDevice
}
