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

/**
 * The resident a route is about, if this key may access it and it is registered: 403 before
 * 404, so a key learns nothing about residents outside its scope.
 */
export function requireResident (p: ApiKeyPrincipal, residentId: string, registry: { resident(id: string): { hospitalId: string | null } | undefined }): string {
  if (!mayAccessResident(p, residentId, (id) => registry.resident(id)?.hospitalId)) throw new VitalmeshError('VM_FORBIDDEN', `this key may not access resident ${residentId}`)
  if (!registry.resident(residentId)) throw new VitalmeshError('VM_NOT_FOUND', `resident ${residentId} is not registered`)
  return residentId
}

/**
 * Alerts are read by more people than readings: a follower (scope: its own id) sees the
 * alerts of the resident it follows, and nothing else of that resident's data.
 */
export function mayReadAlerts (p: ApiKeyPrincipal, residentId: string, hospitalOf: (residentId: string) => string | null | undefined, followed: (followerId: string) => string | undefined): boolean {
  if (p.role === 'follower') return p.scope !== null && followed(p.scope) === residentId
  return mayAccessResident(p, residentId, hospitalOf)
}

/** Who did it, as audit entries name API keys. */
export function actorOf (p: ApiKeyPrincipal): string { return `${p.role}:${p.scope ?? ''}:${p.keyId}` }

/**
 * Records a read of a person's data by anyone but that person (SECURITY.md: every read of
 * another person's data is audited); a resident reading its own data is not recorded.
 */
export function auditRead (audit: { append(actor: string, action: string, subject: string, detail?: unknown): unknown } | undefined, p: ApiKeyPrincipal, action: string, residentId: string, detail: unknown = {}): void {
  if (p.role === 'resident' && p.scope === residentId) return
  audit?.append(actorOf(p), action, residentId, detail)
}
