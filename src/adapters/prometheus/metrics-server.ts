import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";
import type { Logger } from "../../ports/logger.port";
import { CONTENT_TYPES, negotiateFormat, renderMetrics } from "./exposition";

export interface MetricsServerBind {
  readonly host: string;
  /** 0 picks a free port; read the real one from `address` after start. */
  readonly port: number;
}

/** LeakAgent's documented default (LS_PROMETHEUS_BIND). */
export const DEFAULT_METRICS_BIND: MetricsServerBind = { host: "0.0.0.0", port: 9176 };

const METRICS_PATH = "/metrics";

/** Serves the registry at GET /metrics for Prometheus to scrape. */
export class MetricsServer {
  private server: Server | undefined;
  private bound: MetricsServerBind | undefined;

  constructor(
    private readonly bind: MetricsServerBind,
    private readonly registry: Registry,
    private readonly logger: Logger,
  ) {}

  /** Where the server listens once started (the real port when 0 was asked for); undefined otherwise. */
  get address(): MetricsServerBind | undefined {
    return this.bound;
  }

  async start(): Promise<void> {
    if (this.server) return;
    const server = createServer((request, response) => this.handle(request, response));
    server.on("clientError", (error, socket) => {
      this.logger.debug("metrics client error", { error: error.message });
      socket.destroy();
    });
    this.server = server;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(this.bind.port, this.bind.host, () => {
          server.off("error", reject);
          resolve();
        });
      });
    } catch (error) {
      this.server = undefined;
      server.close();
      throw new Error(
        `metrics server cannot listen on ${this.bind.host}:${this.bind.port}: ${(error as Error).message}`,
        { cause: error },
      );
    }
    server.on("error", (error) => this.logger.error("metrics server error", { error: error.message }));
    const { address, port } = server.address() as AddressInfo;
    this.bound = { host: address, port };
    this.logger.info("metrics server listening", { host: address, port });
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    this.bound = undefined;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      // Scrapers keep connections alive; do not wait for them to hang up.
      server.closeAllConnections();
    });
  }

  private handle(request: IncomingMessage, response: ServerResponse): void {
    request.on("error", (error) => this.logger.debug("metrics request error", { error: error.message }));
    response.on("error", (error) => this.logger.debug("metrics response error", { error: error.message }));
    const path = (request.url ?? "").split("?", 1)[0];
    if (path !== METRICS_PATH) {
      reply(response, 404, "text/plain; charset=utf-8", "not found\n");
      return;
    }
    if (request.method !== "GET" && request.method !== "HEAD") {
      response.setHeader("allow", "GET, HEAD");
      reply(response, 405, "text/plain; charset=utf-8", "method not allowed\n");
      return;
    }
    const format = negotiateFormat(request.headers.accept);
    renderMetrics(this.registry, format).then(
      // Node sends no body for HEAD but keeps the content-length.
      (pieces) => reply(response, 200, CONTENT_TYPES[format], pieces),
      (error: unknown) => {
        this.logger.error("metrics rendering failed", { error: (error as Error).message });
        reply(response, 500, "text/plain; charset=utf-8", "metrics unavailable\n");
      },
    );
  }
}

function reply(response: ServerResponse, status: number, contentType: string, body: string | Buffer[]): void {
  if (response.destroyed) return;
  const pieces = typeof body === "string" ? [Buffer.from(body)] : body;
  response.writeHead(status, {
    "content-type": contentType,
    "content-length": pieces.reduce((length, piece) => length + piece.length, 0),
    vary: "Accept",
  });
  for (const piece of pieces) response.write(piece);
  response.end();
}
