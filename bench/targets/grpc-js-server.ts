import { Server, ServerCredentials, status } from "@grpc/grpc-js";
import { LeaksignalService } from "../../tests/generated/leaksignal";

// What a Node developer would write first: @grpc/grpc-js serving the same service definition,
// decoding every MatchData request (the generated codec) and discarding it.

const server = new Server();
server.addService(LeaksignalService, {
  matchData: (_call: unknown, callback: (error: null, response: object) => void) => callback(null, {}),
  updatePolicy: (call: { emit(event: "error", error: object): void }) =>
    call.emit("error", { code: status.UNIMPLEMENTED, details: "not benchmarked" }),
  healthCheck: (_call: unknown, callback: (error: null, response: object) => void) => callback(null, {}),
  ping: (call: { request: { timestamp: bigint } }, callback: (error: null, response: object) => void) =>
    callback(null, { timestamp: call.request.timestamp }),
});
server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (error, port) => {
  if (error) throw error;
  console.log(JSON.stringify({ listening: port }));
});
process.on("SIGTERM", () => server.tryShutdown(() => process.exit(0)));
