import { z } from 'zod'

/** Query of GET /v1/residents/:id/readings. */
export const ReadingsQuery = z.strictObject({
  from: z.coerce.number().int().min(0).optional().describe('epoch ms, inclusive; default: 24 h ago'),
  to: z.coerce.number().int().min(0).optional().describe('epoch ms, exclusive; default: now'),
  limit: z.coerce.number().int().min(1).max(10_000).default(1000),
})
