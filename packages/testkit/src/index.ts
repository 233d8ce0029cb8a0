export { propertySeed } from './seed.js'
