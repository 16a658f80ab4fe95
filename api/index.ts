export * from './app.ts'
export * from './alerting.ts'
export * from './access.ts'
export * from './forwarder.ts'
