import { type ClientHttp2Session, connect, constants } from "node:http2";
import { MATCH_DATA_PATH } from "./h2load";

export interface ProbeResult {
  readonly calls: number;
  /** Calls answered with HTTP 200, grpc-status 0 in the trailers and one well-formed empty message. */
  readonly ok: number;
  /** What the other calls got, e.g. `grpc-status 16: unknown deployment`. */
  readonly failures: readonly string[];
}

/**
 * Makes `calls` MatchData calls with the body h2load posts and checks each gRPC status, which h2load does
 * not see (it counts HTTP statuses only). With `afterMs`, the calls go out that long from now: started
 * beside h2load, they sample the answers given under its load.
 */
export async function probeGrpcStatus(port: number, body: Buffer, calls: number, afterMs = 0): Promise<ProbeResult> {
  if (afterMs > 0) await new Promise((done) => setTimeout(done, afterMs));
  const session = connect(`http://127.0.0.1:${port}`);
  session.on("error", () => {});
  try {
    const results = await Promise.all(Array.from({ length: calls }, () => matchData(session, body)));
    const failures = results.filter((result): result is string => result !== undefined);
    return { calls, ok: calls - failures.length, failures };
  } finally {
    session.close();
  }
}

/** One MatchData call; resolves with what went wrong, or undefined when it was answered OK. */
export function matchData(session: ClientHttp2Session, body: Buffer): Promise<string | undefined> {
  return new Promise((done) => {
    const stream = session.request({
      ":method": "POST",
      ":path": MATCH_DATA_PATH,
      "content-type": "application/grpc",
      te: "trailers",
    });
    let httpStatus = 0;
    let headerStatus: string | undefined;
    let trailerStatus: string | undefined;
    let message = "";
    const chunks: Buffer[] = [];
    stream.on("response", (headers) => {
      httpStatus = Number(headers[constants.HTTP2_HEADER_STATUS]);
      headerStatus = headers["grpc-status"] as string | undefined;
      message = String(headers["grpc-message"] ?? "");
    });
    stream.on("trailers", (trailers) => {
      trailerStatus = trailers["grpc-status"] as string | undefined;
      message = String(trailers["grpc-message"] ?? message);
    });
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("error", (error) => done(`stream error: ${error.message}`));
    stream.on("close", () => {
      const status = trailerStatus ?? headerStatus;
      const response = Buffer.concat(chunks);
      if (httpStatus !== 200) return done(`HTTP ${httpStatus}`);
      if (status !== "0") return done(`grpc-status ${status}: ${decodeURIComponent(message)}`);
      // MatchDataResponse is empty: one uncompressed zero-length message.
      if (!response.equals(Buffer.alloc(5))) return done(`unexpected response message ${response.toString("hex")}`);
      done(undefined);
    });
    stream.end(body);
  });
}
