import { z } from 'zod'
import { IdSchema } from '../core/index.ts'

/** The path of a resident's routes, `/v1/residents/:id/...`. */
export const ResidentParams = z.strictObject({ id: IdSchema.describe('resident id') })

/** Query of GET /v1/residents/:id/readings. */
export const ReadingsQuery = z.strictObject({
  from: z.coerce.number().int().min(0).optional().describe('epoch ms, inclusive; default: 24 h ago'),
  to: z.coerce.number().int().min(0).optional().describe('epoch ms, exclusive; default: now'),
  limit: z.coerce.number().int().min(1).max(10_000).default(1000),
  maxPoints: z.coerce.number().int().min(10).max(10_000).optional()
    .describe('downsample: when [from, to) spans more than this many minutes, answer with at most this many windows (mean, min, max) instead of raw readings'),
})
