import { writeFileSync } from "node:fs";
import { credentials } from "@grpc/grpc-js";
import { afterAll, describe, expect, it } from "vitest";
import { LeaksignalClient } from "../generated/leaksignal";
import { AgentProcess } from "../support/agent-process";
import { parseExposition, seriesKey } from "../support/exposition";
import { GrpcStatus, PolicyStreamClient } from "../support/grpc-client";

// Many deployments, several policy streams each spread over two connections, hot reloads changing some
// policies: every stream must only ever see its own deployment's policies, each version once, in order.

const DEPLOYMENTS = Array.from({ length: 20 }, (_, i) => `d${String(i).padStart(2, "0")}`);
/** Even deployments take a secret api key, odd ones their name (the original behaviour). */
const keyOf = (name: string, generation = 0) =>
  Number(name.slice(1)) % 2 === 0 ? `key-${name}-secret-${generation}` : undefined;
const credentialOf = (name: string) => keyOf(name) ?? name;

/** Each policy carries a marker naming its deployment and version, whatever the agent re-serialises. */
function policyOf(name: string, version: number): string {
  return `    categories:
      c_${name}:
        - raw: "${name}-v${version}"
    endpoints:
      - matches: "**"
        config:
          c_${name}: {}
`;
}

function configText(versions: ReadonlyMap<string, number>, keyGenerations: ReadonlyMap<string, number> = new Map()) {
  const policies = [...versions].map(([name, version]) => `  ${name}:\n${policyOf(name, version)}`).join("");
  const keys = [...versions.keys()]
    .map((name) => [name, keyOf(name, keyGenerations.get(name) ?? 0)] as const)
    .filter(([, key]) => key !== undefined)
    .map(([name, key]) => `  ${name}: ["${key}"]\n`)
    .join("");
  return `policies:\n${policies}api_keys:\n${keys}`;
}

/** The deployment and version markers in what a stream received. */
function markersOf(stream: PolicyStreamClient): Array<{ deployment: string; version: number }> {
  return stream.responses.map((response) => {
    const text = response.policy?.policy ?? "";
    const found = [...text.matchAll(/(d\d\d)-v(\d+)/g)];
    expect(found, `one marker in ${text}`).toHaveLength(1);
    expect(response.legacyPolicy).toBe(text);
    return { deployment: found[0]?.[1] ?? "", version: Number(found[0]?.[2]) };
  });
}

async function eventually(check: () => Promise<void> | void, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await check();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

describe("policy isolation across deployments, connections and reloads", () => {
  const versions = new Map(DEPLOYMENTS.map((name) => [name, 1]));
  const history = new Map(DEPLOYMENTS.map((name) => [name, [1]]));
  let agent: AgentProcess;
  // Two channels that do not share a connection.
  const channels = { "grpc.use_local_subchannel_pool": 1 };
  let connectionA: LeaksignalClient;
  let connectionB: LeaksignalClient;

  afterAll(async () => {
    connectionA?.close();
    connectionB?.close();
    await agent?.stop();
  });

  async function waiting(): Promise<Map<string, number>> {
    const { samples } = parseExposition(await agent.metrics());
    return new Map(
      DEPLOYMENTS.map((d) => [d, samples.get(seriesKey("leakagent_policy_update_waiting", { deployment: d })) ?? 0]),
    );
  }

  async function reload(text: string): Promise<void> {
    const reloaded = agent.nextLog((line) => line.message.startsWith("configuration reloaded"));
    writeFileSync(agent.configPath as string, text);
    agent.reload();
    await reloaded;
  }

  it("sends every stream only its own deployment's policies, in order, with an exact waiting gauge", async () => {
    agent = await AgentProcess.serving({ config: configText(versions) });
    connectionA = new LeaksignalClient(`127.0.0.1:${agent.ingestionPort}`, credentials.createInsecure(), channels);
    connectionB = new LeaksignalClient(`127.0.0.1:${agent.ingestionPort}`, credentials.createInsecure(), channels);

    // Three streams per deployment, opened round-robin across deployments: two on A, one on B.
    const streams: Array<{ deployment: string; connection: "A" | "B"; stream: PolicyStreamClient }> = [];
    for (const round of [0, 1, 2]) {
      for (const deployment of DEPLOYMENTS) {
        const connection = round === 1 ? "B" : "A";
        const client = connection === "A" ? connectionA : connectionB;
        streams.push({
          deployment,
          connection,
          stream: new PolicyStreamClient(client, { apiKey: credentialOf(deployment) }),
        });
      }
    }
    await Promise.all(streams.map(({ stream }) => stream.received(1)));
    await eventually(async () => expect([...(await waiting()).values()]).toEqual(DEPLOYMENTS.map(() => 3)));

    // Reloads changing a different subset each time, then one that changes only a comment (nothing is sent).
    const changes: Array<(index: number) => boolean> = [
      (i) => i % 3 === 0,
      (i) => i % 2 === 1,
      () => true,
      (i) => i < 5,
    ];
    for (const changed of changes) {
      for (const [index, deployment] of DEPLOYMENTS.entries()) {
        if (!changed(index)) continue;
        const next = (versions.get(deployment) ?? 0) + 1;
        versions.set(deployment, next);
        history.get(deployment)?.push(next);
      }
      await reload(configText(versions));
      await Promise.all(streams.map(({ deployment, stream }) => stream.received(history.get(deployment)?.length ?? 0)));
    }
    await reload(`# only a comment changed\n${configText(versions)}`);
    await new Promise((resolve) => setTimeout(resolve, 300));

    for (const { deployment, stream } of streams) {
      const markers = markersOf(stream);
      expect(markers.map((m) => m.deployment)).toEqual(markers.map(() => deployment));
      expect(markers.map((m) => m.version)).toEqual(history.get(deployment));
    }
    expect([...(await waiting()).values()]).toEqual(DEPLOYMENTS.map(() => 3));

    // Connection B's streams go away: exactly one fewer per deployment.
    for (const { connection, stream } of streams) if (connection === "B") stream.cancel();
    await eventually(async () => expect([...(await waiting()).values()]).toEqual(DEPLOYMENTS.map(() => 2)));

    // Removing two deployments and rotating d00's key ends exactly those streams, with UNAVAILABLE.
    const removed = new Set(["d18", "d19"]);
    for (const name of removed) versions.delete(name);
    await reload(configText(versions, new Map([["d00", 1]])));
    const ended = new Set([...removed, "d00"]);
    for (const { deployment, connection, stream } of streams) {
      if (connection === "B") continue;
      if (ended.has(deployment)) expect((await stream.ended).code).toBe(GrpcStatus.UNAVAILABLE);
    }
    await eventually(async () =>
      expect(Object.fromEntries(await waiting())).toEqual(
        Object.fromEntries(DEPLOYMENTS.map((d) => [d, ended.has(d) ? 0 : 2])),
      ),
    );
    // The streams left received nothing more.
    for (const { deployment, connection, stream } of streams) {
      if (connection === "A" && !ended.has(deployment)) {
        expect(stream.responses).toHaveLength(history.get(deployment)?.length ?? 0);
        stream.cancel();
      }
    }
  });
});
