export * from './registry.ts'
export * from './demo.ts'
export * from './audit.ts'
