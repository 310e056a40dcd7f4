export type LogFields = Record<string, unknown>;

/** Structured logging. Never pass api keys, bodies or matched values. */
export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

export const Logger = Symbol.for("leakagent.Logger");
