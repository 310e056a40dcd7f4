import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { policyIdOf } from "../../src/domain/policy/deployment";
import { AgentProcess } from "../support/agent-process";
import { parseExposition, seriesKey } from "../support/exposition";

// Interop with a gRPC implementation that is not ours: Python grpcio (gRPC's C core) with stubs that
// Debian's protoc and grpc_python_plugin generate from proto/leaksignal.proto at test time.

const ROOT = resolve(__dirname, "../..");
const CLIENT = join(ROOT, "tests/support/python/leaksignal_client.py");

function findPython(): string | undefined {
  // Debian's python3-grpcio lives in the system interpreter, which a pyenv/venv python3 may hide.
  for (const python of ["/usr/bin/python3", "python3"]) {
    const probe = spawnSync(python, ["-c", "import grpc, google.protobuf"], { encoding: "utf8" });
    if (!probe.error && probe.status === 0) return python;
  }
  return undefined;
}

function whyNot(): string | undefined {
  const missing: string[] = [];
  if (spawnSync("protoc", ["--version"]).status !== 0) missing.push("protoc (Debian protobuf-compiler)");
  if (spawnSync("which", ["grpc_python_plugin"]).status !== 0) {
    missing.push("grpc_python_plugin (Debian protobuf-compiler-grpc)");
  }
  if (!findPython()) missing.push("a python3 with grpc and protobuf (Debian python3-grpcio)");
  return missing.length ? `missing ${missing.join(", ")}; scripts/install-test-deps.sh installs them` : undefined;
}

const SKIP = whyNot();
if (SKIP) console.warn(`skipping the Python grpcio interop test: ${SKIP}`);

const policy = (style: string) => `categories:
      email:
        - regex: "[a-z0-9.]+@[a-z0-9-]+\\\\.[a-z]{2,}"
    endpoints:
      - matches: "**"
        config:
          email:
            report_style: ${style}
`;
const configWith = (deployments: Record<string, string>) =>
  `policies:\n${Object.entries(deployments)
    .map(([name, style]) => `  ${name}:\n    ${policy(style)}`)
    .join("")}`;

type Line = Record<string, string | number | undefined> & { step: string };

/** Runs the Python client against the agent; `onLine` sees each JSON line as it comes. */
async function runClient(
  stubs: string,
  agent: AgentProcess,
  args: readonly string[],
  onLine: (line: Line) => void = () => {},
): Promise<Line[]> {
  const python = spawn(findPython() as string, [CLIENT, stubs, `127.0.0.1:${agent.ingestionPort}`, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const stderr: string[] = [];
  python.stderr.on("data", (chunk: Buffer) => stderr.push(chunk.toString()));
  const exited = new Promise<number | null>((done) => python.on("exit", done));
  const lines: Line[] = [];
  for await (const text of createInterface({ input: python.stdout })) {
    const line = JSON.parse(text) as Line;
    lines.push(line);
    onLine(line);
  }
  expect(await exited, stderr.join("")).toBe(0);
  return lines;
}

describe.skipIf(SKIP)("a Python grpcio client against the agent", () => {
  let stubs: string;
  const agents: AgentProcess[] = [];

  beforeAll(() => {
    stubs = mkdtempSync(join(tmpdir(), "leakagent-python-stubs-"));
    const plugin = spawnSync("which", ["grpc_python_plugin"], { encoding: "utf8" }).stdout.trim();
    const protoc = spawnSync(
      "protoc",
      [
        "--proto_path=proto",
        `--python_out=${stubs}`,
        `--grpc_python_out=${stubs}`,
        `--plugin=protoc-gen-grpc_python=${plugin}`,
        "leaksignal.proto",
      ],
      { cwd: ROOT, encoding: "utf8" },
    );
    expect(protoc.stderr).toBe("");
    expect(protoc.status).toBe(0);
  });

  afterAll(async () => {
    for (const agent of agents) await agent.stop();
    if (stubs) rmSync(stubs, { recursive: true, force: true });
  });

  it("drives all four methods, keeps its policy stream across hot reloads, and reads the agent's statuses", async () => {
    const agent = await AgentProcess.serving({
      config: configWith({ shop: "raw", other: "raw" }),
      env: { LS_MAX_MESSAGE_BYTES: "65536" },
    });
    agents.push(agent);
    const configPath = agent.configPath as string;
    const policies: Line[] = [];
    const lines = await runClient(stubs, agent, ["shop"], (line) => {
      if (line.step !== "policy") return;
      policies.push(line);
      // A hot reload while the stream is open: first a changed policy, then the deployment removed.
      if (line.count === 1) writeFileSync(configPath, configWith({ shop: "partial_sha256", other: "raw" }));
      if (line.count === 2) writeFileSync(configPath, configWith({ other: "raw" }));
    });
    const step = (name: string) => lines.find((l) => l.step === name);

    expect(step("ping")?.timestamp).toBe("1733000000123456789");
    expect(step("health_check")?.code).toBe("OK");
    expect(step("match_data")?.code).toBe("OK");
    expect(step("match_data_unknown_key")).toMatchObject({ code: "UNAUTHENTICATED" });
    expect(step("match_data_too_large")).toMatchObject({ code: "RESOURCE_EXHAUSTED" });
    expect(step("match_data_too_large")?.details).toMatch(/exceeds the limit of 65536/);
    expect(step("match_data_undecodable")).toMatchObject({ code: "INVALID_ARGUMENT" });
    expect(step("unknown_method")).toMatchObject({
      code: "UNIMPLEMENTED",
      details: "unknown method /leaksignal.Leaksignal/Teleport",
    });
    expect(step("update_policy_unknown_key")).toMatchObject({ code: "UNAUTHENTICATED" });

    // The stream stayed open: the first policy, then the changed one pushed on the same stream.
    const [first, second] = policies;
    expect(policies).toHaveLength(2);
    expect(first?.policy).toContain("report_style: raw");
    expect(first?.policy_id).toBe(policyIdOf(String(first?.policy)));
    expect(first?.legacy_policy_id).toBe(first?.policy_id);
    expect(second?.policy).toContain("report_style: partial_sha256");
    expect(second?.policy_id).toBe(policyIdOf(String(second?.policy)));
    expect(second?.policy_id).not.toBe(first?.policy_id);
    // Then the deployment was removed: the agent ended the stream.
    expect(step("policy_stream_end")).toMatchObject({
      code: "UNAVAILABLE",
      details: "the deployment was removed from the agent's configuration",
    });

    // The report Python encoded is the one the agent observed.
    const { samples } = parseExposition(await agent.metrics());
    const labels = {
      deployment: "shop",
      policy_path: "api.example.com/users",
      local_service: "python-proxy",
      peer_service: "10.1.1.1:5000",
      is_outbound: "false",
      ip: "10.9.8.7",
      token: "",
    };
    expect(samples.get(seriesKey("leaksignal_status_code", { ...labels, status: "201" }))).toBe(1);
    expect(samples.get(seriesKey("leaksignal_response_size_bytes_sum", labels))).toBe(777);
    expect(samples.get(seriesKey("leaksignal_request_time_ms_sum", labels))).toBeCloseTo(3);
    expect(samples.get(seriesKey("leaksignal_match_time_ms_sum", labels))).toBeCloseTo(0.25);
    expect(
      samples.get(
        seriesKey("leaksignal_match_count_sum", {
          ...labels,
          category: "email",
          in_response: "true",
          in_header: "false",
        }),
      ),
    ).toBe(1);
    expect(samples.get(seriesKey("leakagent_rejected_total", { reason: "message_too_large" }))).toBe(1);
    expect(samples.get(seriesKey("leakagent_rejected_total", { reason: "unimplemented" }))).toBe(1);
  });

  it("reconnects after the agent closes its connection at the maximum age (LS_MAX_CONNECTION_AGE_SECONDS)", async () => {
    const agent = await AgentProcess.serving({
      config: configWith({ shop: "raw" }),
      env: { LS_MAX_CONNECTION_AGE_SECONDS: "1" },
    });
    agents.push(agent);
    const started = Date.now();
    const lines = await runClient(stubs, agent, ["shop", "reconnect"]);
    const elapsed = Date.now() - started;
    const maxAge = { code: "UNAVAILABLE", details: "connection reached its maximum age; reconnect" };
    expect(lines.map(({ step, stream }) => `${step} ${stream}`)).toEqual([
      "policy 1",
      "policy_stream_end 1",
      "policy 2",
      "policy_stream_end 2",
    ]);
    expect(lines[1]).toMatchObject(maxAge);
    expect(lines[3]).toMatchObject(maxAge);
    expect(lines[2]?.policy_id).toBe(lines[0]?.policy_id);
    // Two connections of 1 s ± 10 % each.
    expect(elapsed).toBeGreaterThanOrEqual(1800);
  });
});
