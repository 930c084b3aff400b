/** node-postgres's value serializer, as its own queries bind parameters (pg 8). */
declare module 'pg/lib/utils.js' {
  const utils: { prepareValue(value: unknown): unknown }
  export default utils
}
