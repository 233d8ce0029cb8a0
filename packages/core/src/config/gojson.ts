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

/** A JSON syntax or type error; `message` is Go's text. */
export class GoJsonError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'GoJsonError'
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

class Reader {
  private pos = 0
  constructor(private readonly text: string) {}

  parseDocument(): GoValue {
    const value = this.value()
    this.skipWs()
    if (this.pos < this.text.length) this.fail('after top-level value')
    return value
  }

  private fail(context: string): never {
    if (this.pos >= this.text.length) throw new GoJsonError('unexpected end of JSON input')
    const c = String.fromCodePoint(this.text.codePointAt(this.pos) ?? 0)
    throw new GoJsonError(`invalid character ${quoteChar(c)} ${context}`)
  }

  private skipWs(): void {
    while (this.pos < this.text.length && WS.has(this.text[this.pos]!)) this.pos++
  }

  private value(): GoValue {
    this.skipWs()
    const start = this.pos
    const c = this.text[this.pos]
    switch (c) {
      case '{':
        return this.object(start)
      case '[':
        return this.array(start)
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

  private object(start: number): GoValue {
    this.pos++ // '{'
    const entries: [string, GoValue][] = []
    this.skipWs()
    if (this.text[this.pos] === '}') {
      this.pos++
      return { kind: 'object', entries, raw: this.text.slice(start, this.pos) }
    }
    for (;;) {
      this.skipWs()
      if (this.text[this.pos] !== '"') this.fail('looking for beginning of object key string')
      const key = this.string()
      this.skipWs()
      if (this.text[this.pos] !== ':') this.fail('after object key')
      this.pos++
      entries.push([key, this.value()])
      this.skipWs()
      const c = this.text[this.pos]
      if (c === ',') {
        this.pos++
        continue
      }
      if (c === '}') {
        this.pos++
        return { kind: 'object', entries, raw: this.text.slice(start, this.pos) }
      }
      this.fail('after object key:value pair')
    }
  }

  private array(start: number): GoValue {
    this.pos++ // '['
    const items: GoValue[] = []
    this.skipWs()
    if (this.text[this.pos] === ']') {
      this.pos++
      return { kind: 'array', items, raw: this.text.slice(start, this.pos) }
    }
    for (;;) {
      items.push(this.value())
      this.skipWs()
      const c = this.text[this.pos]
      if (c === ',') {
        this.pos++
        continue
      }
      if (c === ']') {
        this.pos++
        return { kind: 'array', items, raw: this.text.slice(start, this.pos) }
      }
      this.fail('after array element')
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

/** Parses JSON text; throws {@link GoJsonError} with Go's message on bad syntax. */
export function parseGoJson(text: string): GoValue {
  return new Reader(text).parseDocument()
}

/** Converts an already-parsed JavaScript value (e.g. a config object) into a {@link GoValue}. */
export function goValueFromPlain(value: unknown): GoValue {
  if (value === null || value === undefined) return { kind: 'null', raw: 'null' }
  switch (typeof value) {
    case 'string':
      return { kind: 'string', value, raw: JSON.stringify(value) }
    case 'boolean':
      return { kind: 'bool', value, raw: String(value) }
    case 'number':
      if (!Number.isFinite(value)) throw new GoJsonError(`json: unsupported value: ${value}`)
      return { kind: 'number', raw: JSON.stringify(value) }
    case 'bigint':
      return { kind: 'number', raw: value.toString() }
    case 'object':
      if (Array.isArray(value)) {
        const items = value.map(goValueFromPlain)
        return { kind: 'array', items, raw: `[${items.map((i) => i.raw).join(',')}]` }
      } else {
        const entries = Object.entries(value as Record<string, unknown>)
          .filter(([, v]) => v !== undefined)
          .map(([k, v]) => [k, goValueFromPlain(v)] as const)
        const raw = `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${v.raw}`).join(',')}}`
        return { kind: 'object', entries, raw }
      }
    default:
      throw new GoJsonError(`json: unsupported type: ${typeof value}`)
  }
}

/** Converts a {@link GoValue} into a plain JavaScript value (last duplicate key wins). */
export function goValueToPlain(value: GoValue): unknown {
  switch (value.kind) {
    case 'object': {
      const out: Record<string, unknown> = {}
      for (const [k, v] of value.entries) {
        // Re-insert so the key's position follows its last occurrence.
        delete out[k]
        // defineProperty keeps a `__proto__` key an ordinary own property, as JSON.parse does.
        Object.defineProperty(out, k, {
          value: goValueToPlain(v),
          enumerable: true,
          writable: true,
          configurable: true,
        })
      }
      return out
    }
    case 'array':
      return value.items.map(goValueToPlain)
    case 'string':
      return value.value
    case 'number':
      return Number(value.raw)
    case 'bool':
      return value.value
    case 'null':
      return null
  }
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
 * strings (Go's default HTML-safe output).
 */
export function goCompact(value: unknown): string {
  const text = JSON.stringify(value)
  if (text === undefined) throw new GoJsonError(`json: unsupported value: ${String(value)}`)
  return text.replace(
    /[<>&\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  )
}
