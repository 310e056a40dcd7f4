import { mkdir, mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { MatchDataResponse } from "../../src/generated/leaksignal";
import { AgentProcess } from "../support/agent-process";
import { leaksignalClient, PolicyStreamClient, unary } from "../support/grpc-client";
import { currentTransaction } from "../support/transactions";

// The config directory and the bundle directory taken away from the running agent, then given back: it
// keeps its last good state, says so, and picks up what comes back.

/** The one deployment `shop`, whose policy differs by report style. */
const configOf = (style: string) =>
  `policies:\n  shop:\n    categories:\n      email:\n        - regex: "[a-z]+@[a-z]+"\n    endpoints:\n      - matches: "**"\n        config:\n          email:\n            report_style: ${style}\n`;

describe("the running agent when its directories go away", () => {
  it("keeps the last good config while the config directory is gone, and applies the one that comes back", async () => {
    const root = await mkdtemp(join(tmpdir(), "leakagent-faults-"));
    const configDir = join(root, "etc");
    const configPath = join(configDir, "config.yaml");
    await mkdir(configDir);
    await writeFile(configPath, configOf("raw"));
    const agent = await AgentProcess.serving({ configPath });
    const client = leaksignalClient(agent.ingestionPort);
    try {
      const stream = new PolicyStreamClient(client, { apiKey: "shop" });
      await stream.received(1);

      const failed = agent.nextLog((l) => l.message.startsWith("configuration reload failed"));
      const moved = agent.nextLog((l) => l.message === "config file watch moved: its directory is gone");
      await rm(configDir, { recursive: true });
      expect((await failed).error).toBe(`${configPath}: cannot read the config file: no such file`);
      expect((await moved).watching).toBe(root);

      // Still serving on the last good config.
      const report = await unary<MatchDataResponse>((cb) =>
        client.matchData(currentTransaction({ apiKey: "shop" }), cb),
      );
      expect(report.error).toBeUndefined();
      const newcomer = new PolicyStreamClient(client, { apiKey: "shop" });
      expect((await newcomer.received(1))[0]?.policy?.policy).toContain("report_style: raw");
      newcomer.cancel();

      const reloaded = agent.nextLog((l) => l.message.startsWith("configuration reloaded from"));
      await mkdir(configDir);
      await writeFile(configPath, configOf("sha256"));
      expect((await reloaded).changed).toEqual(["shop"]);
      expect((await stream.received(2))[1]?.policy?.policy).toContain("report_style: sha256");
      stream.cancel();
    } finally {
      client.close();
      await agent.stop();
      await rm(root, { recursive: true, force: true });
    }
  });

  it("answers 503 for proxy modules while the bundle directory is gone, and serves again once it is back", async () => {
    const root = await mkdtemp(join(tmpdir(), "leakagent-bundle-faults-"));
    const bundle = join(root, "bundle");
    await mkdir(join(bundle, "v1"), { recursive: true });
    await writeFile(join(bundle, "v1", "leaksignal.wasm"), Buffer.from("\0asm\x01\0\0\0"));
    const agent = await AgentProcess.serving({ config: configOf("raw"), env: { LS_BUNDLE_DIR: bundle } });
    const url = `http://127.0.0.1:${agent.ingestionPort}/proxy/v1/leaksignal.wasm`;
    try {
      expect((await fetch(url)).status).toBe(200);

      const warned = agent.nextLog((l) => l.message.startsWith("proxy bundle directory is missing or unreadable"));
      await rename(bundle, join(root, "away"));
      const gone = await fetch(url);
      expect(gone.status).toBe(503);
      expect(await gone.text()).toMatch(/retry later/);
      expect((await warned).path).toBe(bundle);

      const back = agent.nextLog((l) => l.message === "proxy bundle directory is readable again");
      await rename(join(root, "away"), bundle);
      const served = await fetch(url);
      expect(served.status).toBe(200);
      expect(Buffer.from(await served.arrayBuffer())).toEqual(Buffer.from("\0asm\x01\0\0\0"));
      await back;
    } finally {
      await agent.stop();
      await rm(root, { recursive: true, force: true });
    }
  });
});
