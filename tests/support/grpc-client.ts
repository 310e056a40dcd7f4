import { type ClientDuplexStream, credentials, type ServiceError, status } from "@grpc/grpc-js";
import type { UpdatePolicyRequest, UpdatePolicyResponse } from "../../src/generated/leaksignal";
import { LeaksignalClient } from "../generated/leaksignal";

export { status as GrpcStatus };

export function leaksignalClient(port: number): LeaksignalClient {
  return new LeaksignalClient(`127.0.0.1:${port}`, credentials.createInsecure());
}

/** Makes a unary call, e.g. `unary<PingMessage>((cb) => client.ping(req, cb))`, resolving with the response or the error. */
export function unary<Res>(
  invoke: (callback: (err: ServiceError | null, res: Res) => void) => unknown,
): Promise<{ response?: Res; error?: ServiceError }> {
  return new Promise((done) => invoke((error, response) => done(error ? { error } : { response })));
}

/** An open UpdatePolicy stream: responses as they arrive, and how it ended. */
export class PolicyStreamClient {
  readonly responses: UpdatePolicyResponse[] = [];
  readonly ended: Promise<{ code: number; details: string }>;
  private readonly listeners = new Set<() => void>();
  readonly call: ClientDuplexStream<UpdatePolicyRequest, UpdatePolicyResponse>;

  constructor(client: LeaksignalClient, request: Partial<UpdatePolicyRequest>) {
    this.call = client.updatePolicy();
    this.ended = new Promise((done) => {
      this.call.on("status", (s) => done({ code: s.code, details: s.details }));
      this.call.on("error", () => {});
    });
    this.call.on("data", (response: UpdatePolicyResponse) => {
      this.responses.push(response);
      for (const l of this.listeners) l();
    });
    this.call.write({ deploymentName: "", commit: "test", semver: "0.0.0", ...request });
  }

  /** Resolves once `count` responses have arrived. */
  received(count: number, timeoutMs = 5000): Promise<UpdatePolicyResponse[]> {
    return new Promise((done, reject) => {
      const timer = setTimeout(() => {
        this.listeners.delete(check);
        reject(new Error(`only ${this.responses.length} of ${count} policy responses arrived`));
      }, timeoutMs);
      const check = () => {
        if (this.responses.length >= count) {
          clearTimeout(timer);
          this.listeners.delete(check);
          done(this.responses.slice(0, count));
        }
      };
      this.listeners.add(check);
      check();
    });
  }

  cancel(): void {
    this.call.cancel();
  }
}
