import type { FastifyInstance } from 'fastify'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { VitalmeshError } from '../core/index.ts'
import type { AuditLog, Registry } from '../registry/index.ts'
import { mayAccessResident, auditRead } from './access.ts'

const require = createRequire(import.meta.url)
const CONSOLE_DIR = join(import.meta.dirname, '..', 'dashboards', 'console')

/** The files the console consists of; nothing else is served, so no path can reach outside them (a Map, not an object: no inherited keys). */
const FILES = new Map<string, { file: string, type: string }>(Object.entries({
  'index.html': { file: join(CONSOLE_DIR, 'index.html'), type: 'text/html; charset=utf-8' },
  'console.js': { file: join(CONSOLE_DIR, 'console.js'), type: 'text/javascript; charset=utf-8' },
  'console.css': { file: join(CONSOLE_DIR, 'console.css'), type: 'text/css; charset=utf-8' },
  'i18n.js': { file: join(CONSOLE_DIR, 'i18n.js'), type: 'text/javascript; charset=utf-8' },
  'views.js': { file: join(CONSOLE_DIR, 'views.js'), type: 'text/javascript; charset=utf-8' },
  'public.html': { file: join(CONSOLE_DIR, 'public.html'), type: 'text/html; charset=utf-8' },
  'public.js': { file: join(CONSOLE_DIR, 'public.js'), type: 'text/javascript; charset=utf-8' },
  'vendor/uPlot.iife.min.js': { file: require.resolve('uplot/dist/uPlot.iife.min.js'), type: 'text/javascript; charset=utf-8' },
  'vendor/uPlot.min.css': { file: require.resolve('uplot/dist/uPlot.min.css'), type: 'text/css; charset=utf-8' },
}))

export interface ConsoleDeps {
  registry: Registry
  /** reads of a resident's profile by anyone else are recorded */
  audit?: AuditLog
  stats(): Record<string, unknown>
}

/** The web console (resident, operator, clinician and research views, and the public regional statistics) and the small routes it needs. */
export function consoleRoutes (d: ConsoleDeps) {
  const cache = new Map<string, Buffer>()
  return (app: FastifyInstance): void => {
    app.get('/', { config: { roles: 'public' } }, async (_req, reply) => reply.redirect('/console/'))
    app.get<{ Params: { '*': string } }>('/console/*', { config: { roles: 'public' } }, async (req, reply) => {
      const name = req.params['*'] || 'index.html'
      const f = FILES.get(name) // a Map: `__proto__` and `constructor` are not files
      if (!f) throw new VitalmeshError('VM_NOT_FOUND', `no console file ${name}`)
      let body = cache.get(name)
      if (!body) { body = readFileSync(f.file); cache.set(name, body) }
      return reply.type(f.type).header('cache-control', 'no-cache').header('x-content-type-options', 'nosniff').send(body)
    })

    app.get('/v1/whoami', {
      schema: { summary: 'The role and scope of the calling key', tags: ['auth'] },
      config: { roles: ['operator', 'resident', 'hospital', 'research', 'region', 'follower'] },
    }, async (req) => {
      const p = req.principal!
      return { role: p.role, scope: p.scope, keyId: p.keyId }
    })

    app.get<{ Params: { id: string } }>('/v1/residents/:id', {
      schema: { summary: "A resident's profile", tags: ['residents'] },
      config: { roles: ['operator', 'resident', 'hospital'], scope: 'resident (own), hospital (its residents)' },
    }, async (req) => {
      const p = req.principal!
      if (!mayAccessResident(p, req.params.id, (id) => d.registry.resident(id)?.hospitalId)) throw new VitalmeshError('VM_FORBIDDEN', `this key may not access resident ${req.params.id}`)
      const r = d.registry.resident(req.params.id)
      if (!r) throw new VitalmeshError('VM_NOT_FOUND', `resident ${req.params.id} is not registered`)
      auditRead(d.audit, req.principal!, 'pull.profile', r.id)
      return { id: r.id, name: r.name, language: r.language, region: r.region, birthYear: r.birthYear, conditions: r.conditions, hospitalId: r.hospitalId, researchConsent: r.researchConsent }
    })

    app.get('/v1/stats', { schema: { summary: 'Node statistics', tags: ['operators'] }, config: { roles: ['operator'] } }, async (req) => {
      return d.stats()
    })
  }
}
