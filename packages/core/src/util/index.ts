export { sleep } from './sleep.js'
export { backoffDelay } from './backoff.js'
