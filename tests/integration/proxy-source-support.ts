import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import type { HttpReply, HttpRequest } from "../../src/adapters/ingestion/http-route";

export { RecordingLogger } from "../support/recording-logger";

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
