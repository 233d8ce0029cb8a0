/**
 * A small reader for the dotenv format flanneld uses to read subnet.env back
 * (it uses the `godotenv` package): `KEY=value` or `KEY: value` lines, an
 * optional `export ` prefix, `#` comments, single- or double-quoted values.
 * Later lines win.
 */
export function parseDotenv(text: string): Map<string, string> {
  const out = new Map<string, string>()
  for (const rawLine of text.split(/\r?\n/)) {
    let line = rawLine.trim()
    if (line === '' || line.startsWith('#')) continue
    if (line.startsWith('export ')) line = line.slice('export '.length).trimStart()
    const sep = line.search(/[=:]/)
    if (sep <= 0) continue
    const key = line.slice(0, sep).trim()
    let value = line.slice(sep + 1).trim()
    const quote = value[0]
    if ((quote === '"' || quote === "'") && value.length >= 2 && value.endsWith(quote)) {
      value = value.slice(1, -1)
      if (quote === '"') value = value.replace(/\\n/g, '\n').replace(/\\(["\\])/g, '$1')
    } else {
      // An unquoted value ends at an inline comment (" #").
      const hash = value.search(/\s#/)
      if (hash >= 0) value = value.slice(0, hash).trimEnd()
    }
    out.set(key, value)
  }
  return out
}
