import { connect, type Socket } from "node:net";
import {
  FLAG,
  FRAME,
  type H2FrameHeader as Frame,
  h2Frame as frame,
  grpcFrame,
  HTTP2_PREFACE,
  hpackBlock,
  readFrames,
} from "../../scripts/reliability/wire";
import { UpdatePolicyRequest } from "../../src/generated/leaksignal";

// An HTTP/2 client written frame by frame, for clients that misbehave in exactly the way a test wants: more
// streams than the server allows, never reading, going silent (half-open), vanishing with a TCP reset.

export { FRAME };
/** HTTP/2 error codes (RFC 9113 §7) the tests look for. */
export const H2_ERROR = { NO_ERROR: 0, INTERNAL_ERROR: 2, REFUSED_STREAM: 7, CANCEL: 8, ENHANCE_YOUR_CALM: 11 };

/** The request headers of a gRPC call, as Envoy sends them. */
export function grpcHeaders(method: string): Record<string, string> {
  return {
    ":method": "POST",
    ":scheme": "http",
    ":path": `/leaksignal.Leaksignal/${method}`,
    ":authority": "leaksignal_infra",
    "content-type": "application/grpc",
    te: "trailers",
  };
}

/** One client connection speaking HTTP/2 by hand. Answers SETTINGS and PINGs until told to go silent. */
export class RawH2Connection {
  readonly frames: Frame[] = [];
  readonly closed: Promise<void>;
  private received = Buffer.alloc(0);
  private nextStreamId = 1;
  private silent = false;
  private readonly waiters = new Set<() => void>();

  private constructor(readonly socket: Socket) {
    this.closed = new Promise((resolve) => socket.once("close", () => resolve()));
    socket.on("error", () => {});
    socket.on("data", (chunk: Buffer) => this.receive(chunk));
  }

  /** Connects, sends the preface, and resolves once the server's SETTINGS arrived and were acknowledged. */
  static async open(port: number): Promise<RawH2Connection> {
    const socket = connect(port, "127.0.0.1");
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    const connection = new RawH2Connection(socket);
    socket.write(Buffer.concat([HTTP2_PREFACE, frame(FRAME.SETTINGS, 0, 0)]));
    await connection.until((f) => f.type === FRAME.SETTINGS && !(f.flags & FLAG.ACK), "the server's SETTINGS");
    return connection;
  }

  /** Opens a stream: HEADERS, then the body (if any) in one DATA frame. Returns its id. */
  request(headers: Record<string, string>, body?: Buffer, endStream = true): number {
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    const headersEnd = body === undefined && endStream ? FLAG.END_STREAM : 0;
    const frames = [frame(FRAME.HEADERS, FLAG.END_HEADERS | headersEnd, id, hpackBlock(Object.entries(headers)))];
    if (body !== undefined) frames.push(frame(FRAME.DATA, endStream ? FLAG.END_STREAM : 0, id, body));
    this.socket.write(Buffer.concat(frames));
    return id;
  }

  /** Opens an UpdatePolicy stream for `apiKey`, left open as a proxy leaves it. */
  policyStream(apiKey: string): number {
    const request = UpdatePolicyRequest.encode({ apiKey, deploymentName: "", commit: "raw", semver: "0.0.0" });
    return this.request(grpcHeaders("UpdatePolicy"), grpcFrame(request.finish()), false);
  }

  /** The error code of the RST_STREAM the server sent for a stream, if any. */
  resetCode(streamId: number): number | undefined {
    const reset = this.frames.find((f) => f.type === FRAME.RST_STREAM && f.streamId === streamId);
    return reset?.payload.readUInt32BE(0);
  }

  /** The error code of the GOAWAY the server sent, if any. */
  get goawayCode(): number | undefined {
    return this.frames.find((f) => f.type === FRAME.GOAWAY)?.payload.readUInt32BE(4);
  }

  /** Stops reading and answering: to the server, a peer that is gone without a FIN (half-open) or never reads. */
  goSilent(): void {
    this.silent = true;
    this.socket.pause();
  }

  /** Vanishes with a TCP reset, no FIN, no GOAWAY. */
  reset(): void {
    this.socket.resetAndDestroy();
  }

  destroy(): void {
    this.socket.destroy();
  }

  until(predicate: (f: Frame) => boolean, what: string, timeoutMs = 3000): Promise<Frame> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.frames.find(predicate);
        if (!found) return false;
        clearTimeout(timer);
        this.waiters.delete(onFrame);
        resolve(found);
        return true;
      };
      const onFrame = () => void check();
      const timer = setTimeout(() => {
        this.waiters.delete(onFrame);
        reject(new Error(`timed out waiting for ${what}`));
      }, timeoutMs);
      if (!check()) this.waiters.add(onFrame);
    });
  }

  private receive(chunk: Buffer): void {
    this.received = Buffer.concat([this.received, chunk]);
    const frames = readFrames(this.received);
    for (const parsed of frames) {
      this.received = this.received.subarray(9 + parsed.payload.length);
      this.frames.push(parsed);
      if (!this.silent) this.answer(parsed);
    }
    if (frames.length > 0) for (const wake of this.waiters) wake();
  }

  private answer(f: Frame): void {
    if (f.type === FRAME.SETTINGS && !(f.flags & FLAG.ACK)) this.socket.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
    if (f.type === FRAME.PING && !(f.flags & FLAG.ACK)) this.socket.write(frame(FRAME.PING, FLAG.ACK, 0, f.payload));
  }
}
