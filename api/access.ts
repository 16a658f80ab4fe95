import { VitalmeshError } from '../core/index.ts'
import type { ApiKeyPrincipal, Role } from '../registry/index.ts'

export function requireRole (p: ApiKeyPrincipal | undefined, ...roles: Role[]): ApiKeyPrincipal {
  if (!p) throw new VitalmeshError('VM_UNAUTHORIZED', 'send a valid API key as "Authorization: Bearer <key>"')
  if (!roles.includes(p.role)) throw new VitalmeshError('VM_FORBIDDEN', `this route is for ${roles.join(' or ')} keys`)
  return p
}

/** Operators see every resident; a resident only itself; a hospital the residents it cares for. */
export function mayAccessResident (p: ApiKeyPrincipal, residentId: string, hospitalOf: (residentId: string) => string | null | undefined): boolean {
  if (p.role === 'operator') return true
  if (p.role === 'resident') return p.scope === residentId
  if (p.role === 'hospital') return p.scope !== null && hospitalOf(residentId) === p.scope
  return false
}
