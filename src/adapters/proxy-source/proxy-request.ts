import type { HttpReply } from "../ingestion/http-route";

/**
 * The path segments of a request below `prefix`, decoded once, or undefined when the path could
 * name something outside the served tree. `/proxy/` alone gives [].
 *
 * A segment is refused when it is empty (`//`, an absolute path), `.` or `..`, or when it decodes to
 * a slash, a backslash, a NUL or other control character, or a `%` (double encoding). Query strings
 * and fragments are ignored.
 */
export function proxyPathSegments(target: string, prefix: string): string[] | undefined {
  const end = target.search(/[?#]/);
  const path = end === -1 ? target : target.slice(0, end);
  if (!path.startsWith(prefix)) return undefined;
  const rest = path.slice(prefix.length);
  if (rest === "") return [];
  const segments: string[] = [];
  for (const raw of rest.split("/")) {
    let segment: string;
    try {
      segment = decodeURIComponent(raw);
    } catch {
      return undefined;
    }
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what is refused
    if (segment === "" || segment === "." || segment === ".." || /[/\\%\u0000-\u001f\u007f]/.test(segment)) {
      return undefined;
    }
    segments.push(segment);
  }
  return segments;
}

/** The media type Envoy and curl expect for a served file. */
export function contentTypeFor(path: string): string {
  return path.endsWith(".wasm") ? "application/wasm" : "application/octet-stream";
}

/** Whether an `If-None-Match` header matches `etag` (weak comparison, as RFC 9110 asks for this header). */
export function matchesIfNoneMatch(header: string | string[] | undefined, etag: string): boolean {
  if (header === undefined) return false;
  const candidates = (Array.isArray(header) ? header.join(",") : header).split(",");
  const bare = etag.replace(/^W\//, "");
  return candidates.some((candidate) => {
    const tag = candidate.trim();
    return tag === "*" || tag.replace(/^W\//, "") === bare;
  });
}

/** How one pull ended; anything but "served" is counted under its own fixed key. */
export type PullOutcome = "served" | "not_found" | "invalid" | "unavailable";

export interface ProxyReply {
  readonly reply: HttpReply;
  readonly outcome: PullOutcome;
}

/** A short plain-text answer, for everything that is not the module itself. */
export function textReply(status: number, message: string, outcome: PullOutcome): ProxyReply {
  const body = `${message}\n`;
  return {
    outcome,
    reply: {
      status,
      headers: { "content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(body) },
      body,
    },
  };
}
