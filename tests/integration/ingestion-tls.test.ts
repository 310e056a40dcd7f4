import { rename, rm, writeFile } from "node:fs/promises";
import { connect as connectH2 } from "node:http2";
import { request as httpsRequest } from "node:https";
import { join } from "node:path";
import { connect as connectTls } from "node:tls";
import { credentials, Metadata } from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { IngestionConfig } from "../../src/adapters/ingestion/ingestion-server";
import type { PingMessage } from "../../src/generated/leaksignal";
import { LeaksignalClient } from "../generated/leaksignal";
import { GrpcStatus, leaksignalClient, PolicyStreamClient, unary } from "../support/grpc-client";
import { type Issued, opensslMissing, TestCertificates } from "../support/test-certificates";
import { alpha, type RunningIngestion, startIngestion } from "./ingestion-support";

if (opensslMissing) console.warn(`skipping the TLS tests: ${opensslMissing}`);

let running: RunningIngestion | undefined;
const cleanups: Array<() => void> = [];
let certs: TestCertificates;
let ca: Issued;
let server: Issued;
let proxy: Issued;
let rogue: Issued;

beforeAll(() => {
  if (opensslMissing) return;
  certs = new TestCertificates();
  ca = certs.authority("agent-ca");
  server = certs.issue("agent", ca, "server", 0x1001);
  proxy = certs.issue("proxy", ca, "client", 0x2001);
  const rogueCa = certs.authority("rogue-ca");
  rogue = certs.issue("rogue-proxy", rogueCa, "client", 0x3001);
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) cleanup();
  running?.registry.disconnectAll("shutdown");
  await running?.server.stop();
  running = undefined;
});

afterAll(async () => {
  if (certs) await rm(certs.dir, { recursive: true, force: true });
});

async function serving(tls: IngestionConfig["tls"]): Promise<RunningIngestion> {
  running = await startIngestion({ tls });
  return running;
}

/** A grpc-js client that trusts the agent's CA, presenting `identity` if given. */
function tlsClient(port: number, identity?: Issued): LeaksignalClient {
  const client = new LeaksignalClient(
    `localhost:${port}`,
    credentials.createSsl(ca.cert, identity?.key ?? null, identity?.cert ?? null),
  );
  cleanups.push(() => client.close());
  return client;
}

const ping = (client: LeaksignalClient, timestamp = 7n) =>
  unary<PingMessage>((cb) => client.ping({ timestamp }, new Metadata(), { deadline: Date.now() + 3000 }, cb));

/** An HTTPS/1.1 GET trusting the agent's CA. */
function httpsGet(port: number, path: string, identity?: Issued): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = httpsRequest(
      {
        host: "127.0.0.1",
        servername: "localhost",
        port,
        path,
        ca: ca.cert,
        key: identity?.key,
        cert: identity?.cert,
        agent: false,
      },
      (response) => {
        let body = "";
        response.setEncoding("utf8");
        response.on("data", (chunk: string) => {
          body += chunk;
        });
        response.on("end", () => resolve({ status: response.statusCode ?? 0, body }));
      },
    );
    request.on("error", reject);
    request.end();
  });
}

/** What a TLS handshake with the port negotiates, and the serial of the certificate the agent shows. */
function handshake(port: number, alpn: string[]): Promise<{ protocol: string | false | null; serial: string }> {
  return new Promise((resolve, reject) => {
    const socket = connectTls(
      { host: "127.0.0.1", servername: "localhost", port, ca: ca.cert, ALPNProtocols: alpn },
      () => {
        resolve({ protocol: socket.alpnProtocol ?? null, serial: socket.getPeerCertificate().serialNumber });
        socket.destroy();
      },
    );
    socket.on("error", reject);
  });
}

describe.skipIf(opensslMissing !== undefined)("TLS on the ingestion port", () => {
  it("serves gRPC to a grpc-js client that trusts the CA, and HTTP/1.1 probes over HTTPS", async () => {
    const { port } = await serving({ certPath: server.certPath, keyPath: server.keyPath });
    const client = tlsClient(port);
    expect((await ping(client)).response?.timestamp).toBe(7n);
    const stream = new PolicyStreamClient(client, { apiKey: alpha.name });
    cleanups.push(() => stream.cancel());
    expect((await stream.received(1))[0]?.policy?.policyId).toBe(alpha.policyId);

    expect(await httpsGet(port, "/ready")).toEqual({ status: 200, body: "ready\n" });
    expect((await httpsGet(port, "/")).body).toMatch(/^leakagent test: 2 deployments loaded/);
  });

  it("negotiates h2 or http/1.1 by ALPN on the one port, and serves plain HTTP over TLS h2 too", async () => {
    const { port } = await serving({ certPath: server.certPath, keyPath: server.keyPath });
    expect(await handshake(port, ["h2"])).toEqual({ protocol: "h2", serial: "1001" });
    expect((await handshake(port, ["http/1.1"])).protocol).toBe("http/1.1");
    expect((await handshake(port, ["h2", "http/1.1"])).protocol).toBe("h2");

    const session = connectH2(`https://localhost:${port}`, { ca: ca.cert });
    cleanups.push(() => session.destroy());
    const status = await new Promise<number>((resolve, reject) => {
      const stream = session.request({ ":path": "/ready" });
      stream.on("response", (headers) => resolve(Number(headers[":status"])));
      stream.on("error", reject);
      stream.resume();
    });
    expect(status).toBe(200);
  });

  it("refuses cleartext clients on the TLS port and keeps serving TLS ones", async () => {
    const { port } = await serving({ certPath: server.certPath, keyPath: server.keyPath });
    const cleartext = leaksignalClient(port);
    cleanups.push(() => cleartext.close());
    expect((await ping(cleartext)).error?.code).toBe(GrpcStatus.UNAVAILABLE);
    await expect(fetch(`http://127.0.0.1:${port}/ready`)).rejects.toThrow();
    expect((await ping(tlsClient(port))).response?.timestamp).toBe(7n);
  });

  it("fails to start naming the file when the certificate cannot be read", async () => {
    await expect(serving({ certPath: join(certs.dir, "missing.crt"), keyPath: server.keyPath })).rejects.toThrow(
      `cannot read the TLS certificate ${join(certs.dir, "missing.crt")}: ENOENT`,
    );
    await expect(serving({ certPath: server.certPath, keyPath: proxy.keyPath })).rejects.toThrow(
      /do not load: .*key values mismatch/,
    );
  });
});

describe.skipIf(opensslMissing !== undefined)("mutual TLS", () => {
  const mutual = () => ({ certPath: server.certPath, keyPath: server.keyPath, clientCaPath: ca.certPath });

  it("serves a proxy presenting a certificate from the client CA", async () => {
    const { port } = await serving(mutual());
    const client = tlsClient(port, proxy);
    expect((await ping(client)).response?.timestamp).toBe(7n);
    const stream = new PolicyStreamClient(client, { apiKey: alpha.name });
    cleanups.push(() => stream.cancel());
    expect((await stream.received(1))[0]?.policy?.policyId).toBe(alpha.policyId);
  });

  it("refuses gRPC without a certificate or with one from another CA (UNAUTHENTICATED), counted", async () => {
    const { port, telemetry, registry } = await serving(mutual());
    for (const identity of [undefined, rogue]) {
      const refused = await ping(tlsClient(port, identity));
      expect(refused.error?.code).toBe(GrpcStatus.UNAUTHENTICATED);
      expect(refused.error?.details).toBe("a client certificate signed by the agent's client CA is required");
    }
    const stream = new PolicyStreamClient(tlsClient(port), { apiKey: alpha.name });
    expect((await stream.ended).code).toBe(GrpcStatus.UNAUTHENTICATED);
    expect(registry.waiting(alpha.name)).toBe(0);
    expect(telemetry.rejected).toEqual(["client_certificate", "client_certificate", "client_certificate"]);
    expect((await ping(tlsClient(port, proxy))).response?.timestamp).toBe(7n);
  });

  it("answers probes without a client certificate, and nothing else", async () => {
    const { port, telemetry } = await serving(mutual());
    expect(await httpsGet(port, "/ready")).toEqual({ status: 200, body: "ready\n" });
    expect((await httpsGet(port, "/")).status).toBe(200);
    const module = await httpsGet(port, "/proxy/leaksignal.wasm");
    expect(module.status).toBe(403);
    expect(telemetry.rejected).toEqual(["client_certificate"]);
    expect((await httpsGet(port, "/proxy/leaksignal.wasm", proxy)).status).toBe(404);
  });
});

describe.skipIf(opensslMissing !== undefined)("certificate reload", () => {
  it("serves a renewed certificate to new connections, and keeps the last good one when the files break", async () => {
    // The files the agent reads, replaced the way cert-manager and editors do: write beside, rename over.
    const certPath = join(certs.dir, "live.crt");
    const keyPath = join(certs.dir, "live.key");
    const install = async (issued: { cert: Buffer | string; key: Buffer | string }) => {
      await writeFile(`${keyPath}.tmp`, issued.key);
      await writeFile(`${certPath}.tmp`, issued.cert);
      await rename(`${keyPath}.tmp`, keyPath);
      await rename(`${certPath}.tmp`, certPath);
    };
    await install(server);
    const { port, logger } = await serving({ certPath, keyPath });
    const before = tlsClient(port);
    expect((await ping(before)).response?.timestamp).toBe(7n);
    expect((await handshake(port, ["h2"])).serial).toBe("1001");

    const renewedAt = Date.now();
    await install(certs.issue("agent-renewed", ca, "server", 0x1002));
    await expect.poll(async () => (await handshake(port, ["h2"])).serial, { timeout: 3000 }).toBe("1002");
    console.info(`renewed certificate served ${Date.now() - renewedAt} ms after the files changed`);
    expect(logger.at("info")).toContain("TLS certificate reloaded");
    // A connection made before the renewal goes on.
    expect((await ping(before, 8n)).response?.timestamp).toBe(8n);

    await writeFile(certPath, "-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n");
    await expect
      .poll(() => logger.at("error"), { timeout: 3000 })
      .toEqual(["TLS certificate reload failed; keeping the last good certificate"]);
    expect((await handshake(port, ["h2"])).serial).toBe("1002");
    expect((await ping(tlsClient(port))).response?.timestamp).toBe(7n);

    await install(certs.issue("agent-fixed", ca, "server", 0x1003));
    await expect.poll(async () => (await handshake(port, ["h2"])).serial, { timeout: 3000 }).toBe("1003");
  });
});
