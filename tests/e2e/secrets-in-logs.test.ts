import { writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { connect as connectH2 } from "node:http2";
import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { MatchDataRequest, type MatchDataResponse, UpdatePolicyRequest } from "../../src/generated/leaksignal";
import { AgentProcess } from "../support/agent-process";
import { GrpcStatus, leaksignalClient, PolicyStreamClient, unary } from "../support/grpc-client";
import { currentTransaction } from "../support/transactions";

// At debug level, with errors happening all around them, the agent must never write an api key, a raw token,
// body or header bytes, or a matched value to its output.

const SECRETS = {
  apiKey: "sk-live-APIKEY-5f1c9e77d0",
  unknownKey: "sk-live-UNKNOWNKEY-82ab14",
  token: "tok-RAWTOKEN-93be51",
  header: "HEADERBYTES-c4d2a8",
  body: "BODYBYTES-1e7f60",
  matched: "MATCHEDVALUE-77aa02",
};

const CONFIG = `
policies:
  shop:
    categories:
      email:
        - regex: "[a-z]+@[a-z]+\\\\.com"
    endpoints:
      - matches: "**"
        config:
          email: {}
  open:
    endpoints:
      - matches: "**"
api_keys:
  shop: ["${SECRETS.apiKey}"]
`;

/** A report full of the secrets: key, token, header and body bytes, matched values. */
function secretReport(apiKey: string): Buffer {
  const transaction = currentTransaction({ apiKey, token: SECRETS.token });
  const header = Buffer.from(`Bearer ${SECRETS.header}`);
  const match = { categoryName: "email", matcherPath: "user.email", matchedValue: SECRETS.matched };
  return Buffer.from(
    MatchDataRequest.encode({
      ...transaction,
      body: Buffer.from(SECRETS.body),
      requestHeaders: [{ name: "authorization", value: `Bearer ${SECRETS.header}` }],
      matches: [match],
      request: transaction.request && {
        ...transaction.request,
        body: Buffer.from(SECRETS.body),
        bodyMatches: [match],
        headerMatches: transaction.request.headerMatches.map((h) => ({ ...h, header, matches: [match] })),
      },
    }).finish(),
  );
}

function frame(payload: Buffer, flags = 0, declaredLength = payload.length): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt8(flags, 0);
  header.writeUInt32BE(declaredLength, 1);
  return Buffer.concat([header, payload]);
}

/** One raw HTTP/2 request; resolves with the grpc-status or HTTP status it got. */
function rawCall(port: number, headers: Record<string, string>, body: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const session = connectH2(`http://127.0.0.1:${port}`);
    session.on("error", () => resolve("session error"));
    const stream = session.request({ ":method": "POST", te: "trailers", ...headers });
    let answer = "no answer";
    stream.on("response", (h) => {
      answer = h["grpc-status"] !== undefined ? `grpc ${h["grpc-status"]}` : `http ${h[":status"]}`;
    });
    stream.on("trailers", (t) => {
      answer = `grpc ${t["grpc-status"]}`;
    });
    stream.on("data", () => {});
    stream.on("error", () => {});
    stream.on("close", () => {
      session.close();
      resolve(answer);
    });
    stream.end(body);
  });
}

function http1(port: number, path: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve) => {
    const req = httpRequest({ host: "127.0.0.1", port, path, headers, agent: false }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", () => resolve(0));
    req.end();
  });
}

describe("secrets in the agent's output", () => {
  it("never logs api keys, tokens, header or body bytes, or matched values, even at debug level", async () => {
    const agent = await AgentProcess.serving({
      config: CONFIG,
      env: { LS_LOG_LEVEL: "debug", LS_MAX_MESSAGE_BYTES: "2048" },
    });
    const client = leaksignalClient(agent.ingestionPort);
    const port = agent.ingestionPort;
    const grpc = (method: string) => ({
      ":path": `/leaksignal.Leaksignal/${method}`,
      "content-type": "application/grpc",
    });
    try {
      // Accepted: the key opens its deployment, the report is counted.
      const stream = new PolicyStreamClient(client, { apiKey: SECRETS.apiKey });
      await stream.received(1);
      const accepted = await unary<MatchDataResponse>((cb) =>
        client.matchData(MatchDataRequest.decode(secretReport(SECRETS.apiKey)), cb),
      );
      expect(accepted.error).toBeUndefined();

      // Refused: unknown keys, in both fields, on both methods.
      for (const request of [{ apiKey: SECRETS.unknownKey }, { deploymentName: SECRETS.unknownKey }]) {
        const refused = new PolicyStreamClient(client, request);
        expect((await refused.ended).code).toBe(GrpcStatus.UNAUTHENTICATED);
      }
      const unknown = await unary<MatchDataResponse>((cb) =>
        client.matchData(MatchDataRequest.decode(secretReport(SECRETS.unknownKey)), cb),
      );
      expect(unknown.error?.code).toBe(GrpcStatus.UNAUTHENTICATED);

      // Malformed calls carrying the secrets.
      const report = secretReport(SECRETS.apiKey);
      const answers = [
        await rawCall(port, grpc("MatchData"), frame(Buffer.concat([Buffer.from([0xff, 0xff]), report]))),
        await rawCall(port, grpc("MatchData"), frame(Buffer.concat([report, Buffer.alloc(3000, 1)]))),
        await rawCall(port, grpc("MatchData"), frame(report, 0, report.length + 100)),
        await rawCall(port, { ...grpc("MatchData"), "grpc-encoding": "gzip" }, frame(report, 1)),
        await rawCall(
          port,
          { ...grpc("MatchData"), "grpc-encoding": "gzip" },
          frame(gzipSync(report).subarray(0, 40), 1),
        ),
        await rawCall(port, { ...grpc("MatchData"), "grpc-encoding": "br" }, frame(report, 1)),
        await rawCall(port, grpc("NoSuchMethod"), frame(report)),
        await rawCall(port, { ...grpc("UpdatePolicy"), "grpc-timeout": "1n" }, frame(report)),
        await rawCall(port, { ":path": "/proxy/x", "content-type": "text/plain" }, report),
        await rawCall(
          port,
          grpc("UpdatePolicy"),
          frame(
            Buffer.from(
              UpdatePolicyRequest.encode({
                apiKey: SECRETS.unknownKey,
                deploymentName: "",
                commit: SECRETS.token,
                semver: "",
              }).finish(),
            ),
          ),
        ),
      ];
      expect(answers.every((answer) => answer.startsWith("grpc ") || answer.startsWith("http "))).toBe(true);
      expect(answers.filter((answer) => answer !== "grpc 0")).toHaveLength(answers.length);
      await http1(port, "/", { "x-api-key": SECRETS.apiKey, authorization: `Bearer ${SECRETS.token}` });
      await http1(port, `/proxy/${SECRETS.token}`, { "x-api-key": SECRETS.apiKey });

      // Config reloads that fail next to the key: a syntax error, and a key given to two deployments.
      const path = agent.configPath as string;
      for (const broken of [
        `${CONFIG}  open: ["${SECRETS.apiKey}"\n`,
        `${CONFIG}  open: ["${SECRETS.apiKey}"]\n`,
        CONFIG.replace(`["${SECRETS.apiKey}"]`, `${SECRETS.apiKey}`),
      ]) {
        const failed = agent.nextLog((line) => line.level === "error" && /reload failed/.test(line.message));
        writeFileSync(path, broken);
        agent.reload();
        await failed;
      }
      stream.cancel();
    } finally {
      client.close();
      await agent.stop();
    }

    const lines = agent.output().split("\n");
    expect(agent.logs.some((line) => line.level === "debug")).toBe(true);
    for (const [what, secret] of Object.entries(SECRETS)) {
      expect(
        lines.filter((line) => line.includes(secret)),
        `lines with the ${what}`,
      ).toEqual([]);
    }
  });
});
