import type { Readable } from "node:stream";

/** A plain HTTP request on the ingestion port, over HTTP/1.1 or HTTP/2 alike. */
export interface HttpRequest {
  readonly method: string;
  /** The request target as sent, e.g. `/proxy/v1/leaksignal.wasm?x=1`. */
  readonly path: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  /** Aborted when the client goes away. */
  readonly signal: AbortSignal;
}

export interface HttpReply {
  readonly status: number;
  readonly headers?: Readonly<Record<string, string | number>>;
  /** A stream is piped and destroyed if the client goes away; omitted for HEAD by the server. */
  readonly body?: string | Buffer | Readable;
}

/** Answers the plain HTTP requests under one path prefix. */
export interface HttpRoute {
  /** e.g. "/proxy/" */
  readonly prefix: string;
  handle(request: HttpRequest): Promise<HttpReply>;
}
