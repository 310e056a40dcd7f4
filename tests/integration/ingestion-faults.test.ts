import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { type IngestionConfig, IngestionServer } from "../../src/adapters/ingestion/ingestion-server";
import { PrometheusTelemetry } from "../../src/adapters/prometheus/prometheus-telemetry";
import { createDeployment, type Deployment } from "../../src/domain/policy/deployment";
import { DeploymentSet } from "../../src/domain/policy/deployment-set";
import { ProxyRegistry } from "../../src/domain/proxies/proxy-registry";
import { UpdatePolicyResponse } from "../../src/generated/leaksignal";
import { leaksignalClient, PolicyStreamClient } from "../support/grpc-client";
import { FRAME, H2_ERROR, RawH2Connection } from "../support/raw-h2";
import { RecordingLogger } from "../support/recording-logger";
import { alpha, beta } from "./ingestion-support";

// Proxies that fail the way real ones do: vanishing with a TCP reset, going silent without a FIN
// (half-open), never reading what they are sent. The agent must release what each held, and its gauges
// must come back to the truth: the streams that are really open.

interface Running {
  server: IngestionServer;
  proxies: ProxyRegistry;
  metrics: Registry;
  port: number;
}

let running: Running | undefined;
const cleanups: Array<() => void> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) cleanup();
  running?.proxies.disconnectAll("shutdown");
  await running?.server.stop();
  running = undefined;
});

async function serving(options: Partial<IngestionConfig>, deployments: Deployment[]): Promise<Running> {
  const metrics = new Registry();
  const telemetry = new PrometheusTelemetry(metrics, "test");
  const proxies = new ProxyRegistry(telemetry);
  proxies.replaceDeployments(new DeploymentSet(deployments));
  const server = new IngestionServer(
    { bind: { host: "127.0.0.1", port: 0 }, status: () => "test", ...options },
    proxies,
    telemetry,
    new RecordingLogger(),
  );
  await server.start();
  running = { server, proxies, metrics, port: server.port };
  return running;
}

/** `leakagent_policy_update_waiting` as exposed, by deployment. */
async function waitingGauge(metrics: Registry): Promise<Record<string, number>> {
  const values = (await metrics.getSingleMetric("leakagent_policy_update_waiting")?.get())?.values ?? [];
  return Object.fromEntries(values.map((v) => [String(v.labels.deployment), v.value]));
}

async function rejected(metrics: Registry, reason: string): Promise<number> {
  const values = (await metrics.getSingleMetric("leakagent_rejected_total")?.get())?.values ?? [];
  return values.find((v) => v.labels.reason === reason)?.value ?? 0;
}

async function rawConnection(port: number): Promise<RawH2Connection> {
  const connection = await RawH2Connection.open(port);
  cleanups.push(() => connection.destroy());
  return connection;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("proxies that vanish", () => {
  it("releases 300 policy streams on 6 connections, 3 reset and 3 half-open; the gauge ends exact", async () => {
    const keepalive = { intervalMs: 100, timeoutMs: 300 };
    const { server, proxies, metrics, port } = await serving({ keepalive }, [alpha, beta]);

    // One healthy proxy, on grpc-js, which answers pings by itself: it must be left alone throughout.
    const client = leaksignalClient(port);
    cleanups.push(() => client.close());
    const healthy = new PolicyStreamClient(client, { apiKey: alpha.name });
    cleanups.push(() => healthy.cancel());
    await healthy.received(1);

    const connections = await Promise.all(Array.from({ length: 6 }, () => rawConnection(port)));
    for (const connection of connections) {
      for (let i = 0; i < 50; i++) connection.policyStream(i % 2 === 0 ? alpha.name : beta.name);
    }
    await expect.poll(() => proxies.waitingTotal, { timeout: 5000 }).toBe(301);
    expect(await waitingGauge(metrics)).toEqual({ alpha: 151, beta: 150 });
    expect(server.open).toEqual({ connections: 7, sessions: 7, streams: 301 });

    // Proxies that answer their pings keep their connections, however many intervals pass.
    await sleep(keepalive.intervalMs * 5);
    expect(proxies.waitingTotal).toBe(301);
    expect(await rejected(metrics, "keepalive_timeout")).toBe(0);

    const faultAt = Date.now();
    for (const connection of connections.slice(0, 3)) connection.reset();
    for (const connection of connections.slice(3)) connection.goSilent();

    await expect.poll(() => proxies.waitingTotal, { timeout: 5000 }).toBe(1);
    const releasedMs = Date.now() - faultAt;
    expect(await waitingGauge(metrics)).toEqual({ alpha: 1, beta: 0 });
    await expect.poll(() => server.open).toEqual({ connections: 1, sessions: 1, streams: 1 });
    // Reset connections go at once; silent ones after at most one interval plus the ping timeout.
    expect(releasedMs).toBeLessThan(keepalive.intervalMs + keepalive.timeoutMs + 500);
    expect(await rejected(metrics, "keepalive_timeout")).toBe(3);
    console.info(`300 policy streams, 3 connections reset and 3 half-open: all released after ${releasedMs} ms`);

    // The healthy proxy is still connected and still gets policy changes.
    const changed = createDeployment(alpha.name, `${alpha.policyText}# v2\n`);
    proxies.replaceDeployments(new DeploymentSet([changed, beta]));
    const [, pushed] = await healthy.received(2);
    expect(pushed?.policy?.policyId).toBe(changed.policyId);
    expect(await waitingGauge(metrics)).toEqual({ alpha: 1, beta: 0 });
  });
});

describe("a proxy that never reads", () => {
  it("is dropped with ENHANCE_YOUR_CALM once its unread policies pass the backlog limit; readers are not", async () => {
    const backlogLimit = 64 * 1024;
    /** ~8 KiB of policy, different in each version; each message carries it twice (legacy and current fields). */
    const bulk = (version: number) =>
      createDeployment("bulk", `# version ${version}\n${"# padding for a large policy\n".repeat(280)}`);
    const { server, proxies, metrics, port } = await serving(
      { keepalive: { intervalMs: 0, timeoutMs: 1 }, limits: { maxPolicyBacklogBytes: backlogLimit } },
      [bulk(1)],
    );
    const client = leaksignalClient(port);
    cleanups.push(() => client.close());
    const reader = new PolicyStreamClient(client, { apiKey: "bulk" });
    cleanups.push(() => reader.cancel());
    await reader.received(1);

    const stuck = await rawConnection(port);
    const streamId = stuck.policyStream("bulk");
    await stuck.until((f) => f.type === FRAME.DATA && f.streamId === streamId, "the first policy");
    stuck.goSilent();
    expect(proxies.waiting("bulk")).toBe(2);

    let pushes = 1;
    while (proxies.waiting("bulk") === 2 && pushes < 20) {
      pushes++;
      proxies.replaceDeployments(new DeploymentSet([bulk(pushes)]));
      await reader.received(pushes);
      await sleep(20);
    }
    // The client's 64 KiB flow-control window takes the first messages, the backlog the next 64 KiB; the push
    // that finds more than that unread drops the stream. A message counts as unread until its last byte is
    // sent, and the check comes before the write: hence up to three pushes more than would fit exactly.
    const messageBytes = UpdatePolicyResponse.encode(reader.responses[0] as UpdatePolicyResponse).finish().length + 5;
    const fitting = Math.floor((65_535 + backlogLimit) / messageBytes);
    expect(pushes).toBeGreaterThanOrEqual(fitting);
    expect(pushes).toBeLessThanOrEqual(fitting + 3);
    expect(proxies.waiting("bulk")).toBe(1);
    expect(await waitingGauge(metrics)).toEqual({ bulk: 1 });
    expect(await rejected(metrics, "slow_reader")).toBe(1);
    expect(reader.responses).toHaveLength(pushes);
    await expect.poll(() => server.open.streams).toBe(1);
    console.info(`a never-reading policy stream (${messageBytes} B messages) was dropped at push ${pushes}`);

    // When it reads at last, it finds its stream reset.
    stuck.socket.resume();
    await stuck.until((f) => f.type === FRAME.RST_STREAM && f.streamId === streamId, "RST_STREAM");
    expect(stuck.resetCode(streamId)).toBe(H2_ERROR.ENHANCE_YOUR_CALM);
  });
});
