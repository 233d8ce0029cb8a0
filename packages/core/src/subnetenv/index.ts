export {
  DEFAULT_SUBNET_FILE,
  formatSubnetEnv,
  readSubnetEnv,
  subnetEnvValues,
  writeSubnetEnv,
} from './subnetenv.js'
export type { SubnetEnvSnapshot, SubnetEnvValues } from './subnetenv.js'
