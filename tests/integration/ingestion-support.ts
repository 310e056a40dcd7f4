import { type ClientHttp2Session, connect, type IncomingHttpHeaders, type OutgoingHttpHeaders } from "node:http2";
import { grpcFrame as wireFrame } from "../../scripts/reliability/wire";
import { type IngestionConfig, IngestionServer } from "../../src/adapters/ingestion/ingestion-server";
import { createDeployment, type Deployment } from "../../src/domain/policy/deployment";
import { DeploymentSet } from "../../src/domain/policy/deployment-set";
import { type PolicyStreamLimits, ProxyRegistry } from "../../src/domain/proxies/proxy-registry";
import { RecordingLogger } from "../support/recording-logger";
import { RecordingTelemetry } from "../support/recording-telemetry";

export const alpha = createDeployment("alpha", "categories:\n  email:\n    Matchers:\n      regexes: ['(?-u:\\b)x']\n");
export const beta = createDeployment("beta", "endpoints:\n  - matches: '**'\n    config: {}\n");

export { RecordingLogger };

export interface RunningIngestion {
  server: IngestionServer;
  registry: ProxyRegistry;
  telemetry: RecordingTelemetry;
  logger: RecordingLogger;
  port: number;
}

/** A real ingestion server on a free loopback port, serving `deployments`. */
export async function startIngestion(
  options: Partial<IngestionConfig> = {},
  deployments: readonly Deployment[] = [alpha, beta],
  policyStreamLimits?: PolicyStreamLimits,
): Promise<RunningIngestion> {
  const telemetry = new RecordingTelemetry();
  const logger = new RecordingLogger();
  const registry = new ProxyRegistry(telemetry, policyStreamLimits);
  registry.replaceDeployments(new DeploymentSet(deployments));
  const status = () => `leakagent test: ${registry.current.size} deployments loaded`;
  const server = new IngestionServer(
    { bind: { host: "127.0.0.1", port: 0 }, status, ...options },
    registry,
    telemetry,
    logger,
  );
  await server.start();
  return { server, registry, telemetry, logger, port: server.port };
}

/** A length-prefixed gRPC message. */
export function grpcFrame(message: Uint8Array, compressed = false): Buffer {
  return wireFrame(message, { compressed: compressed ? 1 : 0 });
}

/** Splits a response body into its gRPC messages (asserting the framing is whole). */
export function grpcMessages(body: Buffer): Buffer[] {
  const messages: Buffer[] = [];
  let offset = 0;
  while (offset < body.length) {
    if (body.readUInt8(offset) !== 0) throw new Error("response message is compressed");
    const length = body.readUInt32BE(offset + 1);
    if (offset + 5 + length > body.length) throw new Error("response message is truncated");
    messages.push(body.subarray(offset + 5, offset + 5 + length));
    offset += 5 + length;
  }
  return messages;
}

export interface RawResponse {
  headers: IncomingHttpHeaders;
  /** Undefined for a trailers-only response. */
  trailers: IncomingHttpHeaders | undefined;
  body: Buffer;
  /** grpc-status from the trailers, or from the headers of a trailers-only response. */
  status: number | undefined;
  message: string | undefined;
}

export function h2Connect(port: number): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = connect(`http://127.0.0.1:${port}`);
    session.once("connect", () => resolve(session));
    session.once("error", reject);
  });
}

/** What Envoy's gRPC client sends: cluster name as authority, no user-agent, Envoy headers. */
export function envoyHeaders(method: string, extra: OutgoingHttpHeaders = {}): OutgoingHttpHeaders {
  return {
    ":method": "POST",
    ":path": `/leaksignal.Leaksignal/${method}`,
    ":authority": "leaksignal_infra",
    ":scheme": "http",
    "content-type": "application/grpc",
    te: "trailers",
    "x-envoy-internal": "true",
    "x-envoy-expected-rq-timeout-ms": "5000",
    ...extra,
  };
}

/**
 * Sends a request on a raw HTTP/2 session and reads the whole answer. The body is written as the
 * given chunks; with `gapMs`, each chunk waits that long, so it travels in its own DATA frame.
 */
export function rawRequest(
  session: ClientHttp2Session,
  headers: OutgoingHttpHeaders,
  chunks: readonly Buffer[] = [],
  gapMs?: number,
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers, { endStream: chunks.length === 0 });
    let responseHeaders: IncomingHttpHeaders = {};
    let trailers: IncomingHttpHeaders | undefined;
    const body: Buffer[] = [];
    stream.on("response", (h) => {
      responseHeaders = h;
    });
    stream.on("trailers", (t) => {
      trailers = t;
    });
    stream.on("data", (chunk: Buffer) => body.push(chunk));
    stream.on("error", reject);
    stream.on("close", () => {
      const source = trailers ?? responseHeaders;
      const status = source["grpc-status"];
      resolve({
        headers: responseHeaders,
        trailers,
        body: Buffer.concat(body),
        status: status === undefined ? undefined : Number(status),
        message: source["grpc-message"] as string | undefined,
      });
    });
    void (async () => {
      for (const [i, chunk] of chunks.entries()) {
        if (gapMs !== undefined) await new Promise((wait) => setTimeout(wait, gapMs));
        if (i === chunks.length - 1) stream.end(chunk);
        else stream.write(chunk);
      }
    })();
  });
}

/** Polls until `check` holds, failing after a while. */
export async function eventually(check: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
