// Local time moved to core/ when the forwarder's daily windows needed it too (issue 15): the
// reports keep importing it from here.
export * from '../core/localtime.ts'
