import type { LogFields, Logger } from "../../src/ports/logger.port";

/** A Logger that remembers every line, for tests that check what was (not) logged. */
export class RecordingLogger implements Logger {
  readonly lines: Array<{ level: string; message: string; fields: LogFields | undefined }> = [];
  debug(message: string, fields?: LogFields): void {
    this.lines.push({ level: "debug", message, fields });
  }
  info(message: string, fields?: LogFields): void {
    this.lines.push({ level: "info", message, fields });
  }
  warn(message: string, fields?: LogFields): void {
    this.lines.push({ level: "warn", message, fields });
  }
  error(message: string, fields?: LogFields): void {
    this.lines.push({ level: "error", message, fields });
  }
  /** The messages logged at `level`. */
  at(level: string): string[] {
    return this.lines.filter((line) => line.level === level).map((line) => line.message);
  }
}
