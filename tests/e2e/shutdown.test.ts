import { connect as connectH2 } from "node:http2";
import { credentials, type ServiceError, status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { grpcFrame } from "../../scripts/reliability/wire";
import { SHUTDOWN_DEADLINE_MS } from "../../src/app/main";
import { MatchDataRequest, type MatchDataResponse, UpdatePolicyRequest } from "../../src/generated/leaksignal";
import { LeaksignalClient } from "../generated/leaksignal";
import { AgentProcess } from "../support/agent-process";
import { parseExposition, seriesKey } from "../support/exposition";
import { PolicyStreamClient } from "../support/grpc-client";
import { grpcHeaders } from "../support/raw-h2";
import { currentTransaction } from "../support/transactions";

// SIGTERM while proxies are busy: readiness turns false first, then GOAWAY, then policy streams end with
// UNAVAILABLE, in-flight calls finish, and the agent exits in time. Every MatchData call the proxies made
// either succeeded, and is counted in the metrics, or failed with UNAVAILABLE, which proxies retry.

const CONFIG = "policies:\n  prod:\n    categories: {}\n";
const DELAY_MS = 1000;
const LOOPS_PER_CLIENT = 16;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function readiness(port: number): Promise<number> {
  try {
    return (await fetch(`http://127.0.0.1:${port}/ready`)).status;
  } catch {
    return 0; // refused: the listener is closed
  }
}

describe("SIGTERM during load", () => {
  it("turns readiness false, sends GOAWAY, ends policy streams, drains, exits; no call is lost", async () => {
    const agent = await AgentProcess.serving({ config: CONFIG, env: { LS_SHUTDOWN_DELAY_MS: String(DELAY_MS) } });
    const port = agent.ingestionPort;
    expect(await readiness(port)).toBe(200);
    const events: Array<{ what: string; at: number }> = [];
    const note = (what: string) => events.push({ what, at: Date.now() });

    // A proxy connection seen frame by frame: its policy stream, and a MatchData call left in flight.
    const observer = connectH2(`http://127.0.0.1:${port}`);
    observer.on("error", () => {});
    // The first GOAWAY; node:http2 sends another as it closes the drained connection.
    observer.once("goaway", (code) => note(`goaway ${code}`));
    const policy = observer.request(grpcHeaders("UpdatePolicy"));
    policy.write(
      grpcFrame(UpdatePolicyRequest.encode({ apiKey: "prod", deploymentName: "", commit: "", semver: "" }).finish()),
    );
    policy.on("trailers", (trailers) => note(`policy stream ended ${trailers["grpc-status"]}`));
    policy.on("error", () => {});
    policy.resume();
    const held = observer.request(grpcHeaders("MatchData"));
    const heldStatus = new Promise<string>((resolve) => {
      held.on("trailers", (trailers) => resolve(String(trailers["grpc-status"])));
      held.on("close", () => resolve("closed without a status"));
    });
    held.on("error", () => {});
    held.resume();

    // Proxies on grpc-js, each on its own connection, keep MatchData calls in flight until refused.
    const clients = Array.from(
      { length: 4 },
      () =>
        new LeaksignalClient(`127.0.0.1:${port}`, credentials.createInsecure(), {
          "grpc.use_local_subchannel_pool": 1,
        }),
    );
    const grpcStream = new PolicyStreamClient(clients[0] as LeaksignalClient, { apiKey: "prod" });
    await grpcStream.received(1);
    const outcomes = { ok: 0, unavailable: 0, other: [] as string[] };
    let okAfterReadinessFalse = 0;
    let readyFalse = false;
    const report = MatchDataRequest.fromPartial(currentTransaction({ apiKey: "prod" }));
    const loops = clients.flatMap((client) =>
      Array.from({ length: LOOPS_PER_CLIENT }, async () => {
        for (;;) {
          const error = await new Promise<ServiceError | null>((done) =>
            client.matchData(report, (e: ServiceError | null, _r: MatchDataResponse) => done(e)),
          );
          if (!error) {
            outcomes.ok++;
            if (readyFalse) okAfterReadinessFalse++;
            continue;
          }
          if (error.code === status.UNAVAILABLE) outcomes.unavailable++;
          else outcomes.other.push(`${status[error.code]}: ${error.details}`);
          return;
        }
      }),
    );
    await expect.poll(() => outcomes.ok, { timeout: 5000 }).toBeGreaterThan(500);

    const sigtermAt = Date.now();
    void agent.stop("SIGTERM");
    while ((await readiness(port)) === 200) await sleep(20);
    readyFalse = true;
    note("readiness 503");
    expect(Date.now() - sigtermAt).toBeLessThan(DELAY_MS / 2);
    // Still serving while load balancers take the instance out.
    expect(await readiness(port)).toBe(503);
    expect((await fetch(`http://127.0.0.1:${port}/`)).status).toBe(200);

    await Promise.all(loops);
    expect(outcomes.other).toEqual([]);
    expect(okAfterReadinessFalse).toBeGreaterThan(0);
    expect((await grpcStream.ended).code).toBe(status.UNAVAILABLE);

    // The held call keeps the agent draining: what it counted so far is every call that succeeded.
    const { samples } = parseExposition(await agent.metrics());
    expect(samples.get(seriesKey("leakagent_match_inbound", { deployment: "prod" }))).toBe(outcomes.ok);
    expect(samples.get(seriesKey("leakagent_policy_update_waiting", { deployment: "prod" }))).toBe(0);

    held.end(grpcFrame(MatchDataRequest.encode(report).finish()));
    expect(await heldStatus).toBe(String(status.OK));
    const exit = await agent.exited;
    const exitedAfterMs = Date.now() - sigtermAt;
    observer.destroy();
    for (const client of clients) client.close();

    expect(exit.code).toBe(0);
    expect(exitedAfterMs).toBeLessThan(SHUTDOWN_DEADLINE_MS);
    expect(events.map((e) => e.what)).toEqual([
      "readiness 503",
      "goaway 0",
      `policy stream ended ${status.UNAVAILABLE}`,
    ]);
    const at = (what: string) => events.find((e) => e.what === what)?.at ?? 0;
    expect(at("goaway 0") - sigtermAt).toBeGreaterThanOrEqual(DELAY_MS - 50);
    const lines = agent.logs.map((l) => l.message);
    expect(lines.indexOf("not ready; still serving until the shutdown delay is over")).toBeLessThan(
      lines.indexOf("stopped accepting; ending policy streams"),
    );
    console.info(
      `SIGTERM under load: ${outcomes.ok} MatchData OK (${okAfterReadinessFalse} after readiness turned false), ` +
        `${outcomes.unavailable} UNAVAILABLE, 0 other; GOAWAY after ${at("goaway 0") - sigtermAt} ms, exit after ${exitedAfterMs} ms`,
    );
  });
});
