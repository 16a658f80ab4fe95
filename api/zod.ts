import type { FastifySchemaCompiler, FastifyTypeProvider } from 'fastify'
import type { z } from 'zod'
import { VitalmeshError } from '../core/index.ts'

/** How an issue's empty path is named in the message, by the part of the request. */
const PART: Record<string, string> = { body: 'body', querystring: 'query', params: 'path', headers: 'headers' }

/** `path: message; …` for the first five issues (a body with a thousand bad items is not a thousand-line message). */
export function issuesMessage (issues: readonly z.core.$ZodIssue[], part = 'body'): string {
  return issues.slice(0, 5).map((i) => `${i.path.join('.') || part}: ${i.message}`).join('; ')
}

/**
 * Validates a route's `schema.params`, `.querystring` and `.body` (zod schemas) and replaces
 * them with what the schema parsed (coerced numbers, defaults). A failure is a 400
 * `VM_BAD_REQUEST` whose message lists the issues. A body fastify saw none of arrives as
 * null: it is given to the schema as undefined, so `.prefault({})` makes a body optional.
 * A route that must check something else first (who the key speaks for) sets
 * `attachValidation: true` and reads `req.validationError` itself.
 */
export const zodValidatorCompiler: FastifySchemaCompiler<z.ZodType> = ({ schema, httpPart }) => (data: unknown) => {
  const r = schema.safeParse(httpPart === 'body' && data === null ? undefined : data)
  if (r.success) return { value: r.data }
  return { error: new VitalmeshError('VM_BAD_REQUEST', issuesMessage(r.error.issues, PART[httpPart ?? 'body'] ?? 'body')) }
}

/** Types `req.params`, `req.query` and `req.body` from the route's zod schemas: `app.withTypeProvider<ZodTypeProvider>()`. */
export interface ZodTypeProvider extends FastifyTypeProvider {
  validator: this['schema'] extends z.ZodType ? z.output<this['schema']> : unknown
  serializer: this['schema'] extends z.ZodType ? z.input<this['schema']> : unknown
}

/** A body that may be left out (or be JSON null): parsed as `{}`, so the schema's defaults and required fields still apply. */
export const orEmpty = <T extends z.ZodType>(schema: T) => schema.prefault({} as z.input<T>)
