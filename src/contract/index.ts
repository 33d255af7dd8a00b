export * from './identifiers.ts'
export * from './topics.ts'
export * from './types.ts'
