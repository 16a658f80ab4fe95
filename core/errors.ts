/**
 * Stable error codes. A code is never reused once retired; docs/errors.md lists every
 * code and a test fails when the two differ.
 */
export const ErrorCodes = {
  VM_MALFORMED_PAYLOAD: { status: 400, text: 'The payload is not valid UTF-8 JSON. Send one JSON object per message.' },
  VM_INVALID_READING: { status: 400, text: 'The reading does not match payload v1 (fields, types or ranges of the schema).' },
  VM_IMPLAUSIBLE_READING: { status: 422, text: 'The reading is physiologically implausible; measure again.' },
  VM_PAYLOAD_TOO_LARGE: { status: 413, text: 'The MQTT packet exceeds the configured maximum payload size.' },
  VM_ACL_DENIED: { status: 403, text: 'The identity may not publish or subscribe to this topic.' },
  VM_AUTH_FAILED: { status: 401, text: 'Unknown identity or wrong secret.' },
  VM_CLIENT_ID_MISMATCH: { status: 401, text: 'The MQTT clientId must be the authenticated identity (or identity:suffix).' },
  VM_UNAUTHORIZED: { status: 401, text: 'Missing or invalid API key.' },
  VM_FORBIDDEN: { status: 403, text: 'The API key may not access this resource.' },
  VM_NOT_FOUND: { status: 404, text: 'No such resource.' },
  VM_BAD_REQUEST: { status: 400, text: 'The request is invalid.' },
  VM_INVALID_RULE_SET: { status: 400, text: 'The rule set document does not match the rule-set schema.' },
  VM_CONFLICT: { status: 409, text: 'The resource exists already (e.g. a rule set version is published once).' },
  VM_CONFIG_INVALID: { status: 500, text: 'A configuration setting is invalid.' },
  VM_STORE_UNAVAILABLE: { status: 503, text: 'The storage layer is not available.' },
  VM_NOT_READY: { status: 503, text: 'The service is starting or stopping.' },
  VM_INTERNAL: { status: 500, text: 'Internal error; see the server log.' },
  VM_RATE_LIMITED: { status: 429, text: 'Over the rate limit of the device or API key: the message or request was not processed; send it again later (HTTP: after Retry-After).' },
  VM_CONNECTION_LIMIT: { status: 429, text: 'Too many connections from one source address.' },
  VM_INVALID_ROLLUP: { status: 400, text: 'The federation roll-up does not match vitalmesh.region-rollup/1 (histogram keys, counts, window alignment or region).' },
  VM_UNSUPPORTED_MEDIA_TYPE: { status: 415, text: 'The request body\'s Content-Type is not one this route accepts (JSON, or the type its documentation names).' },
  VM_URI_TOO_LONG: { status: 414, text: 'A path parameter is longer than the server accepts.' },
  VM_CONSUMER_FAILED: { status: 503, text: 'A consumer of the reading log (alerting, reports, the forwarder) failed and is retried from its cursor; ingest goes on. See the server log.' },
  VM_SCHEMA_INVALID: { status: 500, text: 'The database schema cannot be migrated: it was written by a newer vitalmesh (a downgrade), or the migration steps are not strictly increasing. See the server log.' },
  VM_INVITATION_INVALID: { status: 404, text: 'The follower invitation code is unknown, already used, expired or withdrawn: ask the resident for a new one.' },
} as const

export type ErrorCode = keyof typeof ErrorCodes

export class VitalmeshError extends Error {
  readonly code: ErrorCode
  readonly status: number
  constructor (code: ErrorCode, message?: string, options?: { cause?: unknown }) {
    super(message ?? ErrorCodes[code].text, options)
    this.name = 'VitalmeshError'
    this.code = code
    this.status = ErrorCodes[code].status
  }

  toJSON (): { code: ErrorCode, message: string } {
    return { code: this.code, message: this.message }
  }
}
