export * from './rules.ts'
export * from './alerts.ts'
export * from './messages.ts'
