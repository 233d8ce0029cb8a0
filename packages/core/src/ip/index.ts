export { Ip4Net, formatIp4, ip4Mask, isIp4, parseIp4 } from './ip4.js'
export { Ip6Net, formatIp6, ip6Mask, isIp6, parseIp6 } from './ip6.js'
