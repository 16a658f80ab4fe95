export * from './broker.ts'
export * from './acl.ts'
