import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import type { HttpReply, HttpRequest } from "../../src/adapters/ingestion/http-route";
import type { LogFields, Logger } from "../../src/ports/logger.port";

/** A Logger that remembers every line, for tests. */
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
  at(level: string): string[] {
    return this.lines.filter((line) => line.level === level).map((line) => line.message);
  }
}

export function get(path: string, headers: Record<string, string> = {}, method = "GET"): HttpRequest {
  return { method, path, headers, signal: new AbortController().signal };
}

export async function bodyOf(reply: HttpReply): Promise<Buffer> {
  const { body } = reply;
  if (body === undefined) return Buffer.alloc(0);
  if (typeof body === "string") return Buffer.from(body);
  if (Buffer.isBuffer(body)) return body;
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export function sha256(bytes: Buffer): string {
  return createHash("sha256").update(bytes).digest("hex");
}

export function isStream(reply: HttpReply): boolean {
  return reply.body instanceof Readable;
}
