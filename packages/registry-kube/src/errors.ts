import { FlannelError, type FlannelErrorOptions } from '@flannel/core'

/**
 * The annotation prefix (`--kube-annotation-prefix`) is not one flanneld
 * accepts; `message` is flanneld's text (spec: kube.md section 3.1).
 */
export class AnnotationPrefixError extends FlannelError {
  /** The prefix as given. */
  readonly prefix: string

  constructor(prefix: string, message: string, options: FlannelErrorOptions = {}) {
    super('KUBE_ANNOTATION_PREFIX', message, options)
    this.prefix = prefix
  }
}

/**
 * The connection settings could not be loaded (kubeconfig file unreadable or
 * invalid, no in-cluster service account). The message starts with
 * flanneld's `fail to create kubernetes config: `.
 */
export class KubeConfigError extends FlannelError {
  /** Where the settings were looked for (a path, `in-cluster`, or `options`). */
  readonly source: string

  constructor(source: string, detail: string, options: FlannelErrorOptions = {}) {
    super('KUBE_CONFIG', `fail to create kubernetes config: ${detail}`, options)
    this.source = source
  }
}

/**
 * The node's name could not be found: neither `nodeName` (`NODE_NAME`) nor a
 * pod to look it up from, or the pod has no `spec.nodeName`. The message is
 * flanneld's text (spec: kube.md section 4, step 2).
 */
export class NodeNameError extends FlannelError {
  constructor(message: string, options: FlannelErrorOptions = {}) {
    super('KUBE_NODE_NAME', message, options)
  }
}

/**
 * This host's Node object did not appear within the wait (flanneld: 30 s).
 * The message is flanneld's:
 * `timeout contacting kube-api, failed to patch node "<n>". Error: context deadline exceeded`.
 */
export class NodeNotFoundError extends FlannelError {
  /** The node's name. */
  readonly node: string

  constructor(node: string, options: FlannelErrorOptions = {}) {
    super(
      'KUBE_NODE_NOT_FOUND',
      `timeout contacting kube-api, failed to patch node "${node}". Error: context deadline exceeded`,
      options,
    )
    this.node = node
  }
}

/**
 * The node has no `spec.podCIDR` yet (flanneld: `node "<n>" pod cidr not
 * assigned`). Retryable: the controller-manager, or an operator, may still
 * assign it; `KubeRegistry.acquireLease` waits for it unless
 * `waitForPodCidr` is false.
 */
export class PodCidrMissingError extends FlannelError {
  /** The node's name. */
  readonly node: string

  constructor(node: string, options: FlannelErrorOptions = {}) {
    super('KUBE_POD_CIDR_MISSING', `node "${node}" pod cidr not assigned`, {
      retryable: true,
      ...options,
    })
    this.node = node
  }
}

/**
 * The node's podCIDR(s) cannot be used: unparsable, more than two, or not
 * inside the configured `Network` / `IPv6Network`. The message is flanneld's
 * text and names the CIDR, the network and the node.
 */
export class PodCidrError extends FlannelError {
  /** The node's name. */
  readonly node: string
  /** The CIDR(s) at fault, as written on the Node. */
  readonly value: string

  constructor(node: string, value: string, message: string, options: FlannelErrorOptions = {}) {
    super('KUBE_POD_CIDR_INVALID', message, options)
    this.node = node
    this.value = value
  }
}

/**
 * The API server refused a request with 401 or 403. The message names the
 * verb and the resource (`forbidden: cannot patch nodes/status "node-1": ...`),
 * so the missing RBAC rule can be read off it.
 */
export class KubeForbiddenError extends FlannelError {
  /** The verb, e.g. `patch`, `list`, `watch`, `get`. */
  readonly verb: string
  /** The resource, e.g. `nodes`, `nodes/status`, `pods`. */
  readonly resource: string
  /** The object's name, when the request named one. */
  readonly objectName: string | undefined
  /** 401 (not authenticated) or 403 (not authorized). */
  readonly status: number

  constructor(
    verb: string,
    resource: string,
    name: string | undefined,
    status: number,
    detail: string,
    options: FlannelErrorOptions = {},
  ) {
    const what = name === undefined ? resource : `${resource} "${name}"`
    const word = status === 401 ? 'unauthorized' : 'forbidden'
    super('KUBE_FORBIDDEN', `${word}: cannot ${verb} ${what}: ${detail}`, options)
    this.verb = verb
    this.resource = resource
    this.objectName = name
    this.status = status
  }
}

/**
 * The API server answered a request with an error that retrying will not
 * fix (400, 404 on a call that needs the object, 422, ...).
 */
export class KubeApiError extends FlannelError {
  /** The verb, e.g. `patch`. */
  readonly verb: string
  /** The resource, e.g. `nodes/status`. */
  readonly resource: string
  /** The object's name, when the request named one. */
  readonly objectName: string | undefined
  /** The HTTP status. */
  readonly status: number
  /** The `reason` of the API server's Status object (`NotFound`, `Invalid`, ...). */
  readonly reason: string | undefined

  constructor(
    verb: string,
    resource: string,
    name: string | undefined,
    status: number,
    reason: string | undefined,
    detail: string,
    options: FlannelErrorOptions = {},
  ) {
    const what = name === undefined ? resource : `${resource} "${name}"`
    super('KUBE_API_ERROR', `${verb} ${what} failed (${status}): ${detail}`, options)
    this.verb = verb
    this.resource = resource
    this.objectName = name
    this.status = status
    this.reason = reason
  }
}
