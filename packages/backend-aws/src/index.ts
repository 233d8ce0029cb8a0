/**
 * @flannel/backend-aws: flannel's `aws-vpc` backend. Each host routes its own
 * subnet in the VPC route table(s) to its network interface through EC2
 * (`@aws-sdk/client-ec2`, loaded lazily), and removes routes of leases that
 * are gone.
 *
 * @packageDocumentation
 */
export { AwsVpcBackend, createBackend, awsVpc, type AwsVpcOptions } from './backend.js'
export { DEFAULT_METADATA_ENDPOINT } from './imds.js'
export {
  AwsApiError,
  AwsAuthError,
  AwsDiscoveryError,
  AwsMetadataError,
  type AwsApiErrorDetails,
  type AwsDiscoveryTarget,
} from './errors.js'
