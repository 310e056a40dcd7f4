import http from "node:http";
import https from "node:https";
import { Readable } from "node:stream";
import type { Logger } from "../../ports/logger.port";
import type { HttpRequest } from "../ingestion/http-route";
import type { ProxySourceOptions } from "./options";
import { contentTypeFor, matchesIfNoneMatch, type ProxyReply, textReply } from "./proxy-request";

/** The origin's headers the agent passes on; everything else is hop-specific or irrelevant to Envoy. */
const passedHeaders = ["content-type", "content-length", "etag", "last-modified"] as const;

interface OriginHead {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
}

interface CachedBody {
  readonly head: OriginHead;
  readonly chunks: readonly Buffer[];
  readonly bytes: number;
}

/**
 * Fetches modules from a remote origin, with one origin request per path however many proxies ask at
 * once, and keeps complete 200 bodies in a bounded in-memory LRU cache.
 */
export class RemotePassthrough {
  /** Map order is recency order: the first entry is evicted first. */
  private readonly cache = new Map<string, CachedBody>();
  private cachedBytes = 0;
  private readonly downloads = new Map<string, OriginDownload>();
  private readonly agents = {
    http: new http.Agent({ keepAlive: true }),
    https: new https.Agent({ keepAlive: true }),
  };

  constructor(
    private readonly logger: Logger,
    private readonly options: ProxySourceOptions,
  ) {}

  async serve(origin: string, segments: readonly string[], request: HttpRequest): Promise<ProxyReply> {
    const url = originUrl(origin, segments);
    // The origin is not echoed: it may carry credentials.
    if (!url) return textReply(502, "Bad gateway: the configured proxy origin is not an http(s) URL.", "unavailable");
    const key = url.href;

    const cached = this.cache.get(key);
    if (cached) {
      this.cache.delete(key);
      this.cache.set(key, cached);
      return reply(cached.head, segments, request, () => Readable.from(cached.chunks, { objectMode: false }));
    }

    let download = this.downloads.get(key);
    if (!download) {
      download = this.download(url);
      this.downloads.set(key, download);
    }
    let head: OriginHead;
    try {
      head = await download.headReady;
    } catch (error) {
      return textReply(502, `Bad gateway: fetching ${printable(url)} failed: ${describe(error)}.`, "unavailable");
    }
    const running = download;
    return reply(head, segments, request, () => running.reader());
  }

  /** Aborts every download in progress and forgets the cache. */
  stop(): void {
    for (const download of this.downloads.values()) download.abort(new Error("the agent is stopping"));
    this.downloads.clear();
    this.cache.clear();
    this.cachedBytes = 0;
    this.agents.http.destroy();
    this.agents.https.destroy();
  }

  private download(url: URL): OriginDownload {
    const agent = url.protocol === "https:" ? this.agents.https : this.agents.http;
    return new OriginDownload(url, agent, this.options, (download) => {
      if (this.downloads.get(url.href) === download) this.downloads.delete(url.href);
      if (download.failure) {
        this.logger.warn("proxy origin download failed", { url: printable(url), reason: download.failure.message });
        return;
      }
      this.logger.info("proxy origin download complete", {
        url: printable(url),
        status: download.head?.status,
        bytes: download.bytes,
      });
      // Only a complete 200 body is worth keeping; anything else is asked again next time.
      if (download.head?.status === 200) this.remember(url.href, download.head, download);
    });
  }

  private remember(key: string, head: OriginHead, download: OriginDownload): void {
    const { bytes } = download;
    if (bytes > this.options.cacheMaxBytes) return;
    for (const [oldKey, old] of this.cache) {
      if (this.cachedBytes + bytes <= this.options.cacheMaxBytes) break;
      this.cache.delete(oldKey);
      this.cachedBytes -= old.bytes;
    }
    const previous = this.cache.get(key);
    if (previous) this.cachedBytes -= previous.bytes;
    this.cache.set(key, { head, chunks: download.chunks, bytes });
    this.cachedBytes += bytes;
  }
}

/** `origin` with the segments appended to its path: `https://host/s3/leakproxy` + `v1/x.wasm`. */
export function originUrl(origin: string, segments: readonly string[]): URL | undefined {
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return undefined;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return undefined;
  url.pathname = `${url.pathname.replace(/\/+$/, "")}/${segments.map(encodeURIComponent).join("/")}`;
  url.hash = "";
  return url;
}

function reply(head: OriginHead, segments: readonly string[], request: HttpRequest, body: () => Readable): ProxyReply {
  const outcome = head.status === 200 ? "served" : "not_found";
  const headers: Record<string, string> = { ...head.headers };
  if (head.status === 200) headers["content-type"] ??= contentTypeFor(segments.join("/"));
  const etag = headers.etag;
  if (head.status === 200 && etag && matchesIfNoneMatch(request.headers["if-none-match"], etag)) {
    return { outcome, reply: { status: 304, headers: { etag } } };
  }
  if (request.method === "HEAD") return { outcome, reply: { status: head.status, headers } };
  return { outcome, reply: { status: head.status, headers, body: body() } };
}

/** The origin URL without credentials or query, for logs and error bodies. */
function printable(url: URL): string {
  return `${url.origin}${url.pathname}`;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * One GET to the origin, shared by every request for the same URL while it runs. The body is kept
 * as the chunks arrive, so a request that joins late replays them from the start, and each request
 * reads at its own pace without slowing the download.
 */
class OriginDownload {
  /** Settles once the origin has answered with a status the agent passes on, or failed. */
  readonly headReady: Promise<OriginHead>;
  head: OriginHead | undefined;
  readonly chunks: Buffer[] = [];
  bytes = 0;
  failure: Error | undefined;
  private done = false;
  private readonly waiting = new Set<() => void>();
  private readonly request: http.ClientRequest;
  private response: http.IncomingMessage | undefined;
  private readonly timers: NodeJS.Timeout[];
  private resolveHead!: (head: OriginHead) => void;
  private rejectHead!: (error: Error) => void;

  constructor(
    url: URL,
    agent: http.Agent,
    options: ProxySourceOptions,
    private readonly onSettled: (download: OriginDownload) => void,
  ) {
    this.headReady = new Promise<OriginHead>((resolve, reject) => {
      this.resolveHead = resolve;
      this.rejectHead = reject;
    });
    // Nobody may be waiting when it fails (every requester left); the failure is logged by onSettled.
    this.headReady.catch(() => {});
    const client = url.protocol === "https:" ? https : http;
    this.request = client.get(
      url,
      { agent, headers: { "accept-encoding": "identity", "user-agent": "leakagent" } },
      (response) => this.received(response),
    );
    this.request.on("error", (error) => this.abort(new Error(`cannot reach the origin (${errorCode(error)})`)));
    this.timers = [
      setTimeout(() => {
        if (!this.response) this.abort(new Error(`no response within ${options.headersTimeoutMs} ms`));
      }, options.headersTimeoutMs),
      setTimeout(
        () => this.abort(new Error(`the download took longer than ${options.totalTimeoutMs} ms`)),
        options.totalTimeoutMs,
      ),
    ];
    for (const timer of this.timers) timer.unref();
  }

  /** A stream of the body from its first byte, following the download as it goes. */
  reader(): Readable {
    let next = 0;
    const download = this;
    const stream: Readable = new Readable({
      read() {
        pump();
      },
      destroy(error, callback) {
        download.waiting.delete(pump);
        callback(error);
      },
    });
    function pump(): void {
      for (let chunk = download.chunks[next]; chunk !== undefined; chunk = download.chunks[next]) {
        next++;
        if (!stream.push(chunk)) return;
      }
      if (download.failure) stream.destroy(download.failure);
      else if (download.done) stream.push(null);
      else download.waiting.add(pump);
    }
    return stream;
  }

  abort(error: Error): void {
    if (this.done || this.failure) return;
    this.failure = error;
    this.request.destroy();
    this.response?.destroy();
    this.rejectHead(error);
    this.settle();
  }

  private received(response: http.IncomingMessage): void {
    this.response = response;
    const status = response.statusCode ?? 0;
    // Redirects are not followed: the agent connects to the configured origin and nowhere else.
    if (status >= 500 || (status >= 300 && status < 400) || status < 200) {
      this.abort(new Error(`the origin answered ${status}`));
      return;
    }
    const headers: Record<string, string> = {};
    for (const name of passedHeaders) {
      const value = response.headers[name];
      if (typeof value === "string") headers[name] = value;
    }
    this.head = { status, headers };
    this.resolveHead(this.head);
    response.on("data", (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.bytes += chunk.length;
      this.wake();
    });
    response.on("end", () => {
      if (this.failure) return;
      this.done = true;
      this.settle();
    });
    response.on("error", (error) => this.abort(new Error(`the origin connection failed (${errorCode(error)})`)));
    response.on("close", () => {
      if (!response.complete) this.abort(new Error("the origin closed the connection before the end of the body"));
    });
  }

  private settle(): void {
    for (const timer of this.timers) clearTimeout(timer);
    this.wake();
    this.onSettled(this);
  }

  private wake(): void {
    const waiting = [...this.waiting];
    this.waiting.clear();
    for (const pump of waiting) pump();
  }
}

function errorCode(error: Error): string {
  return (error as NodeJS.ErrnoException).code ?? error.message;
}
