export * from './registry.ts'
export * from './demo.ts'
export * from './fleet.ts'
export * from './device-file.ts'
