export * from './app.ts'
export * from './devices.ts'
export * from './metrics.ts'
