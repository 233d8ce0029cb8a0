/**
 * A JSON reader that behaves like Go's `encoding/json` where flannel's formats
 * depend on it (spec: core.md section 1.1): duplicate keys are kept in document
 * order (so the last case-variant of a key wins), numbers keep their literal
 * text (so `24.0` can be refused for an unsigned field), every value keeps its
 * raw source text (what a Go `UnmarshalJSON` method receives), and syntax
 * errors carry Go's message text.
 *
 * Internal to @flannel/core: not exported from the package.
 */

/** A decoded JSON value with its source text. */
export type GoValue =
  | {
      readonly kind: 'object'
      readonly entries: readonly (readonly [string, GoValue])[]
      readonly raw: string
    }
  | { readonly kind: 'array'; readonly items: readonly GoValue[]; readonly raw: string }
  | { readonly kind: 'string'; readonly value: string; readonly raw: string }
  | { readonly kind: 'number'; readonly raw: string }
  | { readonly kind: 'bool'; readonly value: boolean; readonly raw: string }
  | { readonly kind: 'null'; readonly raw: string }

/**
 * How deep arrays and objects may nest, as in Go's `encoding/json` scanner
 * (`maxNestingDepth`): the top-level value is depth 1, and opening depth
 * 10001 is a syntax error.
 */
export const MAX_NESTING_DEPTH = 10_000

/**
 * A JSON syntax or type error; `message` is Go's text. For the nesting limit
 * (Go: `invalid character '[' exceeded max depth`) `depth` is the depth that
 * was refused and `key` the top-level object key whose value went too deep
 * (undefined when the top-level value is not an object).
 */
export class GoJsonError extends Error {
  /** The depth that exceeded {@link MAX_NESTING_DEPTH}, for a nesting error. */
  readonly depth: number | undefined
  /** The top-level key under which the error occurred, when known. */
  readonly key: string | undefined

  constructor(message: string, details: { depth?: number; key?: string | undefined } = {}) {
    super(message)
    this.name = 'GoJsonError'
    this.depth = details.depth
    this.key = details.key
  }
}

const WS = new Set([' ', '\t', '\n', '\r'])

/** Quotes one character the way Go's JSON scanner does in its messages. */
function quoteChar(c: string): string {
  if (c === "'") return "'\\''"
  if (c === '"') return "'\"'"
  const special: Record<string, string> = {
    '\x07': '\\a',
    '\b': '\\b',
    '\f': '\\f',
    '\n': '\\n',
    '\r': '\\r',
    '\t': '\\t',
    '\v': '\\v',
    '\\': '\\\\',
  }
  if (special[c] !== undefined) return `'${special[c]}'`
  const code = c.codePointAt(0) ?? 0
  if (code < 0x20 || code === 0x7f) return `'\\x${code.toString(16).padStart(2, '0')}'`
  return `'${c}'`
}

/** An array or object being read: its start offset and what it holds so far. */
type OpenContainer =
  | { readonly kind: 'object'; readonly start: number; readonly entries: [string, GoValue][] }
  | { readonly kind: 'array'; readonly start: number; readonly items: GoValue[] }

/**
 * Reads one document without recursion: open arrays and objects live on an
 * explicit stack, so the depth is bounded by {@link MAX_NESTING_DEPTH} and
 * not by the JavaScript call stack.
 */
class Reader {
  private pos = 0
  private readonly open: OpenContainer[] = []
  /** The key being read or filled at depth 1 (for error details). */
  private topKey: string | undefined

  constructor(private readonly text: string) {}

  parseDocument(): GoValue {
    let value = this.valueStart()
    for (;;) {
      // `value` is complete: hand it to the innermost open container, or finish.
      const top = this.open.at(-1)
      if (top === undefined) break
      if (top.kind === 'object') top.entries.at(-1)![1] = value
      else top.items.push(value)
      this.skipWs()
      const c = this.text[this.pos]
      if (c === ',') {
        this.pos++
        if (top.kind === 'object') this.objectKey(top)
        value = this.valueStart()
        continue
      }
      if (c === (top.kind === 'object' ? '}' : ']')) {
        this.pos++
        value = this.close()
        continue
      }
      this.fail(top.kind === 'object' ? 'after object key:value pair' : 'after array element')
    }
    this.skipWs()
    if (this.pos < this.text.length) this.fail('after top-level value')
    return value
  }

  private fail(context: string, depth?: number): never {
    const details = depth === undefined ? { key: this.topKey } : { depth, key: this.topKey }
    if (this.pos >= this.text.length) {
      throw new GoJsonError('unexpected end of JSON input', details)
    }
    const c = String.fromCodePoint(this.text.codePointAt(this.pos) ?? 0)
    throw new GoJsonError(`invalid character ${quoteChar(c)} ${context}`, details)
  }

  private skipWs(): void {
    while (this.pos < this.text.length && WS.has(this.text[this.pos]!)) this.pos++
  }

  /**
   * Reads a value up to the point where it is complete (a scalar, or an
   * empty container), opening every array and object on the way; returns
   * the completed value.
   */
  private valueStart(): GoValue {
    for (;;) {
      this.skipWs()
      const start = this.pos
      const c = this.text[this.pos]
      if (c === '{' || c === '[') {
        if (this.open.length >= MAX_NESTING_DEPTH) {
          this.fail('exceeded max depth', this.open.length + 1)
        }
        this.pos++
        this.skipWs()
        if (c === '{') {
          if (this.text[this.pos] === '}') {
            this.pos++
            return { kind: 'object', entries: [], raw: this.text.slice(start, this.pos) }
          }
          const obj: OpenContainer = { kind: 'object', start, entries: [] }
          this.open.push(obj)
          this.objectKey(obj)
        } else {
          if (this.text[this.pos] === ']') {
            this.pos++
            return { kind: 'array', items: [], raw: this.text.slice(start, this.pos) }
          }
          this.open.push({ kind: 'array', start, items: [] })
        }
        continue
      }
      return this.scalar(start)
    }
  }

  /** Reads `"key":` inside `obj` and opens its entry. */
  private objectKey(obj: OpenContainer & { kind: 'object' }): void {
    this.skipWs()
    if (this.text[this.pos] !== '"') this.fail('looking for beginning of object key string')
    const key = this.string()
    if (this.open.length === 1) this.topKey = key
    this.skipWs()
    if (this.text[this.pos] !== ':') this.fail('after object key')
    this.pos++
    obj.entries.push([key, { kind: 'null', raw: 'null' }])
  }

  /** Closes the innermost container (its closing bracket was just read). */
  private close(): GoValue {
    const top = this.open.pop()!
    const raw = this.text.slice(top.start, this.pos)
    if (this.open.length === 0) this.topKey = undefined
    return top.kind === 'object'
      ? { kind: 'object', entries: top.entries, raw }
      : { kind: 'array', items: top.items, raw }
  }

  private scalar(start: number): GoValue {
    const c = this.text[this.pos]
    switch (c) {
      case '"': {
        const value = this.string()
        return { kind: 'string', value, raw: this.text.slice(start, this.pos) }
      }
      case 't':
        this.literal('true')
        return { kind: 'bool', value: true, raw: 'true' }
      case 'f':
        this.literal('false')
        return { kind: 'bool', value: false, raw: 'false' }
      case 'n':
        this.literal('null')
        return { kind: 'null', raw: 'null' }
      default:
        if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) {
          this.number()
          return { kind: 'number', raw: this.text.slice(start, this.pos) }
        }
        return this.fail('looking for beginning of value')
    }
  }

  private string(): string {
    const start = this.pos
    this.pos++ // opening quote
    for (;;) {
      if (this.pos >= this.text.length) this.fail('in string literal')
      const c = this.text[this.pos]!
      if (c === '"') break
      if (c < ' ') this.fail('in string literal')
      if (c === '\\') {
        this.pos++
        const e = this.text[this.pos]
        if (e === 'u') {
          for (let i = 0; i < 4; i++) {
            this.pos++
            if (!/^[0-9a-fA-F]$/.test(this.text[this.pos] ?? '')) {
              this.fail('in \\u hexadecimal character escape')
            }
          }
        } else if (e === undefined || !'"\\/bfnrt'.includes(e)) {
          this.fail('in string escape code')
        }
      }
      this.pos++
    }
    this.pos++ // closing quote
    // The literal is valid JSON now; let the platform decode its escapes.
    return JSON.parse(this.text.slice(start, this.pos)) as string
  }

  private number(): void {
    const digits = (): void => {
      while (
        this.pos < this.text.length &&
        this.text[this.pos]! >= '0' &&
        this.text[this.pos]! <= '9'
      ) {
        this.pos++
      }
    }
    const isDigit = (): boolean => {
      const c = this.text[this.pos]
      return c !== undefined && c >= '0' && c <= '9'
    }
    if (this.text[this.pos] === '-') {
      this.pos++
      if (!isDigit()) this.fail('in numeric literal')
    }
    if (this.text[this.pos] === '0') this.pos++
    else digits()
    if (this.text[this.pos] === '.') {
      this.pos++
      if (!isDigit()) this.fail('after decimal point in numeric literal')
      digits()
    }
    if (this.text[this.pos] === 'e' || this.text[this.pos] === 'E') {
      this.pos++
      if (this.text[this.pos] === '+' || this.text[this.pos] === '-') this.pos++
      if (!isDigit()) this.fail('in exponent of numeric literal')
      digits()
    }
  }

  private literal(word: string): void {
    for (let i = 0; i < word.length; i++) {
      if (this.text[this.pos] !== word[i]) {
        this.fail(`in literal ${word} (expecting ${quoteChar(word[i]!)})`)
      }
      this.pos++
    }
  }
}

/**
 * Parses JSON text; throws {@link GoJsonError} with Go's message on bad
 * syntax, including nesting deeper than {@link MAX_NESTING_DEPTH}.
 */
export function parseGoJson(text: string): GoValue {
  return new Reader(text).parseDocument()
}

/** A plain array or object being converted by {@link goValueFromPlain}. */
type PlainFrame = {
  readonly source: object
  readonly key: string | undefined
  readonly pending: (readonly [string | undefined, unknown])[]
  readonly done: (readonly [string, GoValue])[]
  readonly isArray: boolean
}

/**
 * Converts an already-parsed JavaScript value (e.g. a config object) into a
 * {@link GoValue}, without recursion. Nesting deeper than
 * {@link MAX_NESTING_DEPTH} and cycles are refused with a {@link GoJsonError}.
 */
export function goValueFromPlain(value: unknown): GoValue {
  const stack: PlainFrame[] = []
  const onStack = new Set<object>()
  let result: GoValue | undefined
  const deliver = (v: GoValue, key: string | undefined): void => {
    const parent = stack.at(-1)
    if (parent === undefined) result = v
    else parent.done.push([key ?? '', v])
  }
  let next: readonly [string | undefined, unknown] | undefined = [undefined, value]
  while (next !== undefined || stack.length > 0) {
    if (next !== undefined) {
      const [key, v] = next
      next = undefined
      // The top-level object's key this value sits under (for error details).
      const topKey =
        stack.length === 0 || stack[0]!.isArray
          ? undefined
          : stack.length === 1
            ? key
            : stack[1]!.key
      if (typeof v !== 'object' || v === null) {
        deliver(scalarFromPlain(v, topKey), key)
        continue
      }
      if (stack.length >= MAX_NESTING_DEPTH) {
        throw new GoJsonError('json: exceeded max depth', { depth: stack.length + 1, key: topKey })
      }
      if (onStack.has(v)) {
        throw new GoJsonError('json: unsupported value: encountered a cycle', { key: topKey })
      }
      onStack.add(v)
      const isArray = Array.isArray(v)
      const pending = isArray
        ? (v as unknown[]).map((item) => [undefined, item] as const)
        : Object.entries(v as Record<string, unknown>).filter(([, item]) => item !== undefined)
      stack.push({ source: v, key, pending: pending.reverse(), done: [], isArray })
      continue
    }
    const top = stack.at(-1)!
    next = top.pending.pop()
    if (next !== undefined) continue
    stack.pop()
    onStack.delete(top.source)
    deliver(containerFromPlain(top), top.key)
  }
  return result!
}

function scalarFromPlain(value: unknown, key: string | undefined): GoValue {
  if (value === null || value === undefined) return { kind: 'null', raw: 'null' }
  switch (typeof value) {
    case 'string':
      return { kind: 'string', value, raw: JSON.stringify(value) }
    case 'boolean':
      return { kind: 'bool', value, raw: String(value) }
    case 'number':
      if (!Number.isFinite(value)) {
        throw new GoJsonError(`json: unsupported value: ${value}`, { key })
      }
      return { kind: 'number', raw: JSON.stringify(value) }
    case 'bigint':
      return { kind: 'number', raw: value.toString() }
    default:
      throw new GoJsonError(`json: unsupported type: ${typeof value}`, { key })
  }
}

function containerFromPlain(frame: PlainFrame): GoValue {
  // Built with `+` so that nested raw texts are shared, not copied at every level.
  if (frame.isArray) {
    const items = frame.done.map(([, v]) => v)
    const raw = items.reduce((text, item, i) => text + (i === 0 ? '' : ',') + item.raw, '[') + ']'
    return { kind: 'array', items, raw }
  }
  const entries = frame.done
  const raw =
    entries.reduce(
      (text, [k, v], i) => text + (i === 0 ? '' : ',') + JSON.stringify(k) + ':' + v.raw,
      '{',
    ) + '}'
  return { kind: 'object', entries, raw }
}

/**
 * Converts a {@link GoValue} into a plain JavaScript value (last duplicate
 * key wins), without recursion: a parsed value may be nested
 * {@link MAX_NESTING_DEPTH} deep.
 */
export function goValueToPlain(value: GoValue): unknown {
  const root: { value?: unknown } = {}
  // Each task fills one slot: `target[slot]` gets the plain form of `source`.
  const tasks: {
    source: GoValue
    target: Record<string, unknown> | unknown[]
    slot: string | number
  }[] = [{ source: value, target: root as Record<string, unknown>, slot: 'value' }]
  for (let task = tasks.pop(); task !== undefined; task = tasks.pop()) {
    const { source, target, slot } = task
    let plain: unknown
    switch (source.kind) {
      case 'object': {
        const out: Record<string, unknown> = {}
        for (const [k] of source.entries) {
          // Re-insert so the key's position follows its last occurrence.
          delete out[k]
          // defineProperty keeps a `__proto__` key an ordinary own property, as JSON.parse does.
          Object.defineProperty(out, k, {
            value: null,
            enumerable: true,
            writable: true,
            configurable: true,
          })
        }
        // Only the last occurrence of a key counts.
        const last = new Map<string, GoValue>()
        for (const [k, v] of source.entries) last.set(k, v)
        for (const [k, v] of last) tasks.push({ source: v, target: out, slot: k })
        plain = out
        break
      }
      case 'array': {
        const out: unknown[] = new Array<unknown>(source.items.length)
        source.items.forEach((item, i) => tasks.push({ source: item, target: out, slot: i }))
        plain = out
        break
      }
      case 'string':
        plain = source.value
        break
      case 'number':
        plain = Number(source.raw)
        break
      case 'bool':
        plain = source.value
        break
      case 'null':
        plain = null
        break
    }
    ;(target as Record<string | number, unknown>)[slot] = plain
  }
  return root.value
}

/**
 * Case folding used to match JSON keys to field names (Go's `bytes.EqualFold`
 * semantics: simple Unicode folding, so `ſ` matches `s` and the Kelvin sign `k`).
 */
export function foldKey(name: string): string {
  let out = ''
  for (const ch of name) {
    const upper = ch.toUpperCase()
    out += upper.length === ch.length ? upper.toLowerCase() : ch.toLowerCase()
  }
  return out
}

/**
 * The value a Go struct field named `field` receives from `obj`: every key
 * that matches it exactly or case-insensitively assigns it, so the last such
 * key in document order wins. `undefined` when no key matches.
 */
export function goField(obj: GoValue & { kind: 'object' }, field: string): GoValue | undefined {
  const folded = foldKey(field)
  let found: GoValue | undefined
  for (const [key, value] of obj.entries) {
    if (key === field || foldKey(key) === folded) found = value
  }
  return found
}

/** The word Go uses for a JSON value's kind in `cannot unmarshal <kind> into ...`. */
export function goKindWord(value: GoValue): string {
  return value.kind === 'bool' ? 'bool' : value.kind
}

/**
 * Writes `value` compactly the way Go's encoder re-compacts raw JSON: no
 * insignificant whitespace, and `<`, `>`, `&`, U+2028, U+2029 escaped inside
 * strings (Go's default HTML-safe output). Values are written as
 * `JSON.stringify` would (`toJSON` honoured, `undefined` members left out),
 * but without recursion, so a value decoded from {@link MAX_NESTING_DEPTH}
 * levels can be written back.
 *
 * @throws GoJsonError for `undefined`, a BigInt, a cycle, or nesting deeper
 * than {@link MAX_NESTING_DEPTH}.
 */
export function goCompact(value: unknown): string {
  const text = writeCompact(value)
  if (text === undefined) throw new GoJsonError(`json: unsupported value: ${String(value)}`)
  return text.replace(
    /[<>&\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  )
}

/** One array or object being written by {@link writeCompact}. */
interface WriteFrame {
  /** The key (or index) this container sits under in its parent. */
  readonly key: string
  readonly source: object
  readonly isArray: boolean
  readonly keys: readonly string[]
  next: number
  readonly parts: string[]
}

/** `JSON.stringify(value)` without recursion; undefined where it would give undefined. */
function writeCompact(value: unknown): string | undefined {
  const stack: WriteFrame[] = []
  const onStack = new Set<object>()
  let result: string | undefined
  const deliver = (text: string | undefined, key: string): void => {
    const parent = stack.at(-1)
    if (parent === undefined) result = text
    else if (parent.isArray) parent.parts.push(text ?? 'null')
    else if (text !== undefined) parent.parts.push(`${JSON.stringify(key)}:${text}`)
  }
  let next: readonly [string, unknown] | undefined = ['', value]
  while (next !== undefined || stack.length > 0) {
    if (next !== undefined) {
      const [key, raw] = next
      next = undefined
      const v = toJsonValue(raw, key)
      if (typeof v !== 'object' || v === null) {
        deliver(scalarText(v), key)
        continue
      }
      if (stack.length >= MAX_NESTING_DEPTH) {
        throw new GoJsonError('json: exceeded max depth', { depth: stack.length + 1 })
      }
      if (onStack.has(v)) throw new GoJsonError('json: unsupported value: encountered a cycle')
      onStack.add(v)
      const isArray = Array.isArray(v)
      const keys = isArray ? [] : Object.keys(v)
      stack.push({ key, source: v, isArray, keys, next: 0, parts: [] })
      continue
    }
    const top = stack.at(-1)!
    const count = top.isArray ? (top.source as unknown[]).length : top.keys.length
    if (top.next < count) {
      const i = top.next++
      const key = top.isArray ? String(i) : top.keys[i]!
      next = [key, (top.source as Record<string, unknown>)[key]]
      continue
    }
    stack.pop()
    onStack.delete(top.source)
    const body = top.parts.join(',')
    deliver(top.isArray ? `[${body}]` : `{${body}}`, top.key)
  }
  return result
}

/** A value after `toJSON` and unboxing, as `JSON.stringify` sees it. */
function toJsonValue(value: unknown, key: string): unknown {
  let v = value
  if (
    typeof v === 'object' &&
    v !== null &&
    typeof (v as { toJSON?: unknown }).toJSON === 'function'
  ) {
    v = (v as { toJSON: (key: string) => unknown }).toJSON.call(v, key)
  }
  if (v instanceof Number || v instanceof String || v instanceof Boolean) v = v.valueOf()
  return v
}

/** The text of a non-container value, or undefined when `JSON.stringify` leaves it out. */
function scalarText(v: unknown): string | undefined {
  switch (typeof v) {
    case 'string':
      return JSON.stringify(v)
    case 'number':
      return Number.isFinite(v) ? JSON.stringify(v) : 'null'
    case 'boolean':
      return v ? 'true' : 'false'
    case 'bigint':
      throw new GoJsonError('json: unsupported type: bigint')
    case 'object':
      return 'null' // v === null
    default:
      return undefined // undefined, functions, symbols
  }
}
