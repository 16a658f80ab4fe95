import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { IdSchema, VitalmeshError, topics } from '../core/index.ts'
import { FollowerChannelsSchema, FollowerNotifySchema, FollowerRelationSchema, type AuditLog, type FollowerRecord, type Registry } from '../registry/index.ts'
import { auditRead, requireResident } from './access.ts'
import { ResidentParams } from './schemas.ts'
import { orEmpty, type ZodTypeProvider } from './zod.ts'

export interface FollowerRoutesDeps {
  registry: Registry
  audit: AuditLog
  /** ends the MQTT sessions of a removed follower (its username is its id) */
  disconnect(followerId: string): number
}

const Language = z.enum(['zh-CN', 'en'])
export const InviteFollowerBody = z.strictObject({
  name: z.string().trim().min(1).max(80).describe('how the resident names them, e.g. "My daughter" / "女儿"'),
  relation: FollowerRelationSchema,
  language: Language.optional().describe('the follower\'s language (default zh-CN); the follower may change it'),
})
const FollowerPrefs = {
  language: Language.optional(),
  channels: FollowerChannelsSchema.optional().describe('mqtt: followers/{id}/alerts; live: the WebSocket stream (/v1/live)'),
  notify: FollowerNotifySchema.optional().describe('which of the resident\'s alerts are copied as they happen (all, warning, critical, escalations); the escalation step reaches every follower'),
}
export const AcceptInvitationBody = z.strictObject({ code: z.string().min(1).max(200), ...FollowerPrefs })
export const FollowerPreferencesBody = orEmpty(z.strictObject(FollowerPrefs))
const FollowerParams = ResidentParams.extend({ followerId: IdSchema })

const FOLLOWERS = ['followers']

/** What the resident (and an operator) sees of a follower: never a secret, nor a key id (removedBy says only who: the resident, the follower or the centre). */
function view (f: FollowerRecord): Omit<FollowerRecord, 'apiKeyId'> {
  const { apiKeyId: _, ...rest } = f
  return { ...rest, removedBy: f.removedBy === null ? null : f.removedBy.split(':')[0]! }
}

/**
 * Followers: a resident invites a relative or a community doctor, who accepts with the code
 * and gets an identity of its own; the resident sees and removes them. Every change is in the
 * audit trail, and a follower's reads of the resident's alerts are too (the resident's
 * "who read my data").
 */
export function followerRoutes (d: FollowerRoutesDeps) {
  return (plain: FastifyInstance): void => {
    const app = plain.withTypeProvider<ZodTypeProvider>()
    const resident = (p: Parameters<typeof requireResident>[0], id: string): string => requireResident(p, id, d.registry)
    const me = (p: { scope: string | null }): FollowerRecord => {
      const f = p.scope ? d.registry.followers.get(p.scope) : undefined
      if (!f || f.status !== 'active') throw new VitalmeshError('VM_FORBIDDEN', 'this follower key no longer follows anyone')
      return f
    }
    const removeFollower = (f: FollowerRecord, actor: string, why: string): void => {
      d.registry.atomically(() => {
        d.registry.followers.remove(f.id, actor)
        d.audit.append(actor, 'follower.removed', f.residentId, { followerId: f.id, name: f.name, relation: f.relation, why })
      })
      d.disconnect(f.id)
    }

    app.post('/v1/residents/:id/followers', {
      schema: { summary: 'Invite a follower (a relative, a community doctor): returns a one-time code to pass on', tags: FOLLOWERS, params: ResidentParams, body: InviteFollowerBody },
      config: { roles: ['resident'], scope: 'resident (own)' },
    }, async (req, reply) => {
      const p = req.principal!
      const id = resident(p, req.params.id)
      const out = d.registry.atomically(() => {
        const r = d.registry.followers.invite(id, req.body, `resident:${id}`)
        d.audit.append(`resident:${id}:${p.keyId}`, 'follower.invited', id, { followerId: r.follower.id, name: r.follower.name, relation: r.follower.relation })
        return r
      })
      return reply.status(201).send({
        follower: view(out.follower),
        invitation: { code: out.code, expiresAt: out.follower.invitationExpiresAt, accept: 'POST /v1/followers/accept {"code": "..."} (no API key needed; the code works once)' },
      })
    })

    app.get('/v1/residents/:id/followers', {
      schema: { summary: "A resident's followers: invited, active and removed", tags: FOLLOWERS, params: ResidentParams },
      config: { roles: ['resident', 'operator'], scope: 'resident (own)' },
    }, async (req) => {
      const p = req.principal!
      const id = resident(p, req.params.id)
      auditRead(d.audit, p, 'pull.followers', id)
      return { residentId: id, followers: d.registry.followers.ofResident(id).map(view) }
    })

    app.delete('/v1/residents/:id/followers/:followerId', {
      schema: { summary: 'Remove a follower (or withdraw an invitation): its key, password and sessions end now', tags: FOLLOWERS, params: FollowerParams },
      config: { roles: ['resident', 'operator'], scope: 'resident (own)' },
    }, async (req) => {
      const p = req.principal!
      const id = resident(p, req.params.id)
      const f = d.registry.followers.get(req.params.followerId)
      if (!f || f.residentId !== id) throw new VitalmeshError('VM_NOT_FOUND', `resident ${id} has no follower ${req.params.followerId}`)
      if (f.status !== 'removed') removeFollower(f, `${p.role}:${p.scope ?? ''}:${p.keyId}`, 'removed by the resident')
      return { residentId: id, follower: view(d.registry.followers.get(f.id)!) }
    })

    app.post('/v1/followers/accept', {
      schema: { summary: 'A follower accepts an invitation: returns its API key and MQTT password (shown once)', tags: FOLLOWERS, body: AcceptInvitationBody },
      config: { roles: 'public' },
    }, async (req, reply) => {
      const { code, ...prefs } = req.body
      const out = await d.registry.followers.accept(code, prefs, (f, keyId) => {
        d.audit.append(`follower:${f.id}:${keyId}`, 'follower.accepted', f.residentId, { followerId: f.id, name: f.name, relation: f.relation, channels: f.channels, notify: f.notify })
      })
      const f = out.follower
      return reply.status(201).send({
        follower: view(f),
        apiKey: out.apiKey,
        mqtt: { username: f.id, password: out.password, clientId: f.id, topic: topics.followerAlerts(f.id), ackTopic: topics.followerAck(f.id) },
      })
    })

    app.get('/v1/followers/me', {
      schema: { summary: 'The follower itself and the resident it follows', tags: FOLLOWERS },
      config: { roles: ['follower'], scope: 'follower (own)' },
    }, async (req) => {
      const f = me(req.principal!)
      const r = d.registry.resident(f.residentId)
      return { follower: view(f), resident: { id: f.residentId, name: r?.name ?? null, language: r?.language ?? null } }
    })

    app.put('/v1/followers/me', {
      schema: { summary: 'Choose channels, language and which alerts to be told of', tags: FOLLOWERS, body: FollowerPreferencesBody },
      config: { roles: ['follower'], scope: 'follower (own)' },
    }, async (req) => {
      const p = req.principal!
      const f = me(p)
      const updated = d.registry.atomically(() => {
        const u = d.registry.followers.setPreferences(f.id, req.body)
        d.audit.append(`follower:${f.id}:${p.keyId}`, 'follower.preferences', f.residentId, req.body)
        return u
      })
      return { follower: view(updated) }
    })

    app.delete('/v1/followers/me', {
      schema: { summary: 'Stop following (the follower leaves)', tags: FOLLOWERS },
      config: { roles: ['follower'], scope: 'follower (own)' },
    }, async (req) => {
      const p = req.principal!
      const f = me(p)
      removeFollower(f, `follower:${f.id}:${p.keyId}`, 'the follower left')
      return { follower: view(d.registry.followers.get(f.id)!) }
    })
  }
}
