export * from './registry.ts'
export * from './demo.ts'
