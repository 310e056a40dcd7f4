import { createServer } from "node:http2";
import type { Socket } from "node:net";

// The runtime's limit: node:http2 reading each call's request and answering it with a fixed
// gRPC OK (response headers, one empty message, grpc-status 0 trailers), doing nothing else.

const EMPTY_MESSAGE = Buffer.from([0, 0, 0, 0, 0]);
const RESPONSE_HEADERS = { ":status": 200, "content-type": "application/grpc" };
const TRAILERS = { "grpc-status": "0" };

// Like the agent, without Nagle delays on small responses.
const server = createServer();
server.on("connection", (socket: Socket) => socket.setNoDelay(true));
server.on("stream", (stream) => {
  stream.on("error", () => {});
  stream.on("wantTrailers", () => stream.sendTrailers(TRAILERS));
  stream.on("end", () => {
    if (stream.destroyed) return;
    stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
    stream.end(EMPTY_MESSAGE);
  });
  stream.resume();
});
server.listen(0, "127.0.0.1", () => {
  const address = server.address();
  console.log(JSON.stringify({ listening: typeof address === "object" ? address?.port : undefined }));
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
