/** A log method in pino's shape: an object of fields first, then a message. */
export interface LogFn {
  (obj: object, msg?: string): void
  (msg: string): void
}

/**
 * The logger the packages write to. pino's logger satisfies it as is; the
 * default everywhere is {@link silentLogger}.
 */
export interface Logger {
  trace: LogFn
  debug: LogFn
  info: LogFn
  warn: LogFn
  error: LogFn
  /** A logger that adds `bindings` to every entry. */
  child(bindings: Record<string, unknown>): Logger
}

const noop = (): void => {}

/** A logger that drops everything. */
export const silentLogger: Logger = {
  trace: noop,
  debug: noop,
  info: noop,
  warn: noop,
  error: noop,
  child: () => silentLogger,
}
