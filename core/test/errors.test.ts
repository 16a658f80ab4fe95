import { describe, expect, it } from 'vitest'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ErrorCodes, VitalmeshError } from '../index.ts'

describe('error codes', () => {
  it('are exactly the ones listed in docs/errors.md, with the same status', () => {
    const doc = readFileSync(join(import.meta.dirname, '..', '..', 'docs', 'errors.md'), 'utf8')
    const documented = [...doc.matchAll(/^\| `(VM_[A-Z_]+)` \| (\d+) \|/gm)].map((m) => [m[1], Number(m[2])])
    const exported = Object.entries(ErrorCodes).map(([code, v]) => [code, v.status])
    expect(documented).toEqual(exported)
  })

  it('carry their code and status', () => {
    const e = new VitalmeshError('VM_FORBIDDEN', 'nope')
    expect(e.toJSON()).toEqual({ code: 'VM_FORBIDDEN', message: 'nope' })
    expect(e.status).toBe(403)
  })
})
