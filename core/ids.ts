import { z } from 'zod'

/**
 * Identities appear inside MQTT topics, so they may never contain '/', '+', '#' or
 * control characters; a conservative alphabet keeps them safe in URLs and SQL too.
 */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/

export const IdSchema = z.string().regex(ID_PATTERN, 'ids are 1-64 characters of A-Z a-z 0-9 . _ - and start with a letter or digit')

export function isValidId (s: string): boolean {
  return ID_PATTERN.test(s)
}
