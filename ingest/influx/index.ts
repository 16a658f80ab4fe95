export * from './schema.ts'
export { InfluxHttp, BadLinesError, retryAfterMs, type Series } from './http.ts'
export * from './stores.ts'
export * from './rollups.ts'
