import type { ProxySourceConfig } from "../../ports/config-source.port";
import type { Logger } from "../../ports/logger.port";
import type { TelemetrySink } from "../../ports/telemetry-sink.port";
import type { HttpReply, HttpRequest, HttpRoute } from "../ingestion/http-route";
import { BundleFiles } from "./bundled";
import { defaultProxySourceOptions, type ProxySourceOptions } from "./options";
import { type ProxyReply, proxyPathSegments, textReply } from "./proxy-request";
import { RemotePassthrough } from "./remote-passthrough";

/**
 * Serves the LeakSignal proxy's Wasm module to Envoy under /proxy/, from a bundle directory or
 * passed through from a remote origin, whichever the current configuration names.
 */
export class ProxyRoute implements HttpRoute {
  readonly prefix = "/proxy/";
  private source: ProxySourceConfig | undefined;
  private readonly bundle: BundleFiles;
  private readonly remote: RemotePassthrough;

  constructor(
    private readonly telemetry: TelemetrySink,
    private readonly logger: Logger,
    options: Partial<ProxySourceOptions> = {},
  ) {
    this.bundle = new BundleFiles(logger);
    this.remote = new RemotePassthrough(logger, { ...defaultProxySourceOptions, ...options });
  }

  /** Applies to the next request; requests already answering finish from the old source. */
  setSource(source: ProxySourceConfig | undefined): void {
    this.source = source;
  }

  async start(): Promise<void> {}

  /** Aborts origin downloads in progress and drops the cache. */
  async stop(): Promise<void> {
    this.remote.stop();
  }

  async handle(request: HttpRequest): Promise<HttpReply> {
    const segments = proxyPathSegments(request.path, this.prefix);
    let answer: ProxyReply;
    try {
      answer = await this.answer(request, segments);
    } catch (error) {
      this.logger.error("serving a proxy module failed", {
        path: request.path,
        reason: error instanceof Error ? error.message : String(error),
      });
      answer = textReply(500, "Internal error while serving the proxy module.", "unavailable");
    }
    // Only paths that exist get their own series, so garbage requests cannot grow the metric without bound.
    this.telemetry.proxyPulled(answer.outcome === "served" && segments ? segments.join("/") : answer.outcome);
    return answer.reply;
  }

  private answer(request: HttpRequest, segments: string[] | undefined): Promise<ProxyReply> | ProxyReply {
    if (request.method !== "GET" && request.method !== "HEAD") {
      const refused = textReply(405, "Method not allowed: use GET or HEAD.", "invalid");
      return { ...refused, reply: { ...refused.reply, headers: { ...refused.reply.headers, allow: "GET, HEAD" } } };
    }
    if (!segments) return textReply(400, "Bad request: invalid proxy module path.", "invalid");
    const source = this.source;
    if (!source) {
      return textReply(404, "Not found: no proxy_source is configured on this agent.", "not_found");
    }
    if (segments.length === 0) return textReply(404, "Not found.", "not_found");
    if (source.type === "bundled") return this.bundle.serve(source.path, segments, request);
    return this.remote.serve(source.origin, segments, request);
  }
}
