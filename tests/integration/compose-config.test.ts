import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { createInterface } from "node:readline";
import { load } from "js-yaml";
import { afterAll, describe, expect, it } from "vitest";
import { checkConfig } from "../../src/adapters/config-file";
import { readSettings } from "../../src/app/settings";
import { missingTool } from "../support/prometheus";

// deploy/compose checked without starting it: what `docker compose config` resolves (where a compose
// client exists), and each file the stack mounts, against the agent's own defaults and validators.
// tests/e2e/compose.test.ts runs the stack itself where Docker can.

const ROOT = resolve(__dirname, "../..");
const DIR = join(ROOT, "deploy/compose");
const DEFAULTS = readSettings({});

/** `docker compose`, or the standalone `docker-compose` (Debian's package), whichever works. */
function composeClient(): string[] | undefined {
  if (spawnSync("docker", ["compose", "version"]).status === 0) return ["docker", "compose"];
  if (spawnSync("docker-compose", ["version"]).status === 0) return ["docker-compose"];
  return undefined;
}
const CLIENT = composeClient();
const NO_CLIENT = CLIENT
  ? undefined
  : "neither `docker compose` nor `docker-compose` is installed (Debian package docker-compose)";
if (NO_CLIENT) console.warn(`skipping \`docker compose config\`: ${NO_CLIENT}`);
const PROMTOOL_MISSING = missingTool("promtool", "prometheus");

// biome-ignore lint/suspicious/noExplicitAny: resolved compose YAML, checked field by field
type Resolved = { services: Record<string, any> };

function composeConfig(...files: string[]): Resolved {
  const [command, ...args] = CLIENT as string[];
  const config = spawnSync(
    command as string,
    [...args, "-p", "leakagent-demo", ...files.flatMap((f) => ["-f", join(DIR, f)]), "config"],
    { encoding: "utf8", env: { PATH: process.env.PATH ?? "" } },
  );
  expect(config.stderr.trim()).toBe("");
  expect(config.status).toBe(0);
  return load(config.stdout) as Resolved;
}

/**
 * The Envoy bootstrap as the envoy service's entrypoint writes it: its own shell command from compose.yaml
 * run on the template, with the placeholders' values in the environment.
 */
function envoyConfig(wasmPath: string, sha256: string) {
  const compose = load(readFileSync(join(DIR, "compose.yaml"), "utf8")) as {
    services: { envoy: { command: string[] } };
  };
  // `$$` is compose's escape for a `$` the shell sees.
  const [fill, start] = (compose.services.envoy.command[0] ?? "").replaceAll("$$", "$").split(" && exec ");
  expect(start).toBe("envoy -c /tmp/envoy.yaml --log-level warn");
  const out = join(mkdtempSync(join(tmpdir(), "leakagent-envoy-")), "envoy.yaml");
  const written = spawnSync(
    "sh",
    [
      "-c",
      (fill ?? "")
        .replace("/etc/envoy/envoy.yaml.in", join(DIR, "envoy/envoy.yaml.in"))
        .replace("/tmp/envoy.yaml", out),
    ],
    {
      encoding: "utf8",
      env: { PATH: process.env.PATH ?? "", LEAKSIGNAL_WASM_PATH: wasmPath, LEAKSIGNAL_WASM_SHA256: sha256 },
    },
  );
  expect(written.status, written.stderr).toBe(0);
  const text = readFileSync(out, "utf8");
  expect(text).not.toContain("@LEAKSIGNAL_");
  // biome-ignore lint/suspicious/noExplicitAny: Envoy bootstrap YAML
  return load(text) as any;
}

describe("deploy/compose", () => {
  describe.skipIf(NO_CLIENT)("`docker compose config`", () => {
    it("resolves the stack: five services, pinned images, the agent built from this repository", () => {
      const { services } = composeConfig("compose.yaml");
      expect(Object.keys(services).sort()).toEqual(["envoy", "grafana", "leakagent", "prometheus", "upstream"]);
      for (const [name, service] of Object.entries(services)) {
        if (service.build) continue;
        expect(service.image, name).toMatch(/^[\w./-]+:(?!latest$)[\w.-]+$/);
      }
      expect(resolve(services.leakagent.build.context)).toBe(ROOT);
      expect(existsSync(join(ROOT, services.leakagent.build.dockerfile))).toBe(true);
      // Every file or directory the stack mounts exists.
      for (const [name, service] of Object.entries(services)) {
        for (const volume of service.volumes ?? []) {
          const source = typeof volume === "string" ? (volume.split(":")[0] as string) : volume.source;
          expect(existsSync(source), `${name}: ${source}`).toBe(true);
        }
      }
      expect(services.envoy.environment.LEAKSIGNAL_WASM_PATH).toMatch(/^[\w.-]+\/leaksignal\.wasm$/);
      expect(services.envoy.environment.LEAKSIGNAL_WASM_SHA256).toMatch(/^[0-9a-f]{64}$/);
    });

    it("with compose.bundle.yaml, builds the bundle image and reads a config without proxy_source", () => {
      const { services } = composeConfig("compose.yaml", "compose.bundle.yaml");
      const agent = services.leakagent;
      expect(agent.build.target).toBe("bundle");
      const bundleDir = join(resolve(agent.build.context), agent.build.args.BUNDLE_DIR);
      expect(relative(ROOT, bundleDir)).toBe("deploy/compose/bundle");
      expect(statSync(bundleDir).isDirectory()).toBe(true);
      const [source, target] = (agent.volumes[0] as string).split(":") as [string, string];
      const configFile = relative(target, agent.environment.LS_CONFIG_PATH);
      expect(existsSync(join(source, configFile))).toBe(true);
      expect(readFileSync(join(ROOT, "Dockerfile"), "utf8")).toMatch(/^FROM \S+ AS bundle$/m);
    });
  });

  it("points Envoy's leaksignal_infra cluster and Wasm download at the agent, over h2c", () => {
    const envoy = envoyConfig("v1/leaksignal.wasm", "0".repeat(64));
    const infra = envoy.static_resources.clusters.find((c: { name: string }) => c.name === "leaksignal_infra");
    expect(infra.type).toBe("STRICT_DNS");
    expect(infra.http2_protocol_options).toEqual({});
    const address = infra.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address;
    expect(address).toEqual({ address: "leakagent", port_value: DEFAULTS.ingestionBind.port });

    const filters = envoy.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters;
    const wasm = filters.find((f: { name: string }) => f.name === "envoy.filters.http.wasm").typed_config.config;
    const filterConfig = load(wasm.configuration.value) as Record<string, string>;
    expect(filterConfig.upstream_cluster).toBe("leaksignal_infra");
    expect(filterConfig.upstream_host).toBe(`leakagent:${DEFAULTS.ingestionBind.port}`);
    const remote = wasm.vm_config.code.remote;
    expect(remote.http_uri).toMatchObject({
      uri: `http://leakagent:${DEFAULTS.ingestionBind.port}/proxy/v1/leaksignal.wasm`,
      cluster: "leaksignal_infra",
    });
    expect(remote.sha256).toBe("0".repeat(64));
    // The filter's api_key is a deployment in both agent configs.
    for (const file of ["config.yaml", "config.bundled.yaml"]) {
      const { config } = checkConfig(readFileSync(join(DIR, "leakagent", file), "utf8"), file, { strict: true });
      expect(config?.deployments.names(), file).toContain(filterConfig.api_key);
    }
    // The router comes last, as Envoy requires.
    expect(filters.at(-1).name).toBe("envoy.filters.http.router");
  });

  it("gives the agent configs it accepts: remote passthrough by default, the image's bundle otherwise", () => {
    const read = (file: string) => readFileSync(join(DIR, "leakagent", file), "utf8");
    const remote = checkConfig(read("config.yaml"), "config.yaml", { strict: true });
    expect([...remote.errors, ...remote.warnings]).toEqual([]);
    expect(remote.config?.proxySource).toEqual({
      type: "remote_passthrough",
      origin: "https://ingestion.app.leaksignal.com/s3/leakproxy",
    });
    // The bundle image sets LS_BUNDLE_DIR=/bundle (Dockerfile).
    expect(readFileSync(join(ROOT, "Dockerfile"), "utf8")).toContain("ENV LS_BUNDLE_DIR=/bundle");
    const bundled = checkConfig(read("config.bundled.yaml"), "config.bundled.yaml", {
      strict: true,
      bundleDir: "/bundle",
    });
    expect([...bundled.errors, ...bundled.warnings]).toEqual([]);
    expect(bundled.config?.proxySource).toMatchObject({ type: "bundled" });
    // Same policies in both.
    expect(bundled.config?.deployments.names()).toEqual(remote.config?.deployments.names());
  });

  it.skipIf(PROMTOOL_MISSING)("has Prometheus scrape the agent's metrics port (promtool check config)", () => {
    const file = join(DIR, "prometheus/prometheus.yml");
    const check = spawnSync("promtool", ["check", "config", file], { encoding: "utf8" });
    expect(check.status, check.stdout + check.stderr).toBe(0);
    const config = load(readFileSync(file, "utf8")) as {
      scrape_configs: Array<{ static_configs: Array<{ targets: string[] }> }>;
    };
    expect(config.scrape_configs[0]?.static_configs[0]?.targets).toEqual([`leakagent:${DEFAULTS.prometheusBind.port}`]);
  });

  it("provisions Grafana with the Prometheus data source and the dashboards of deploy/grafana", () => {
    const compose = load(readFileSync(join(DIR, "compose.yaml"), "utf8")) as {
      services: { grafana: { volumes: string[] } };
    };
    const mounts = Object.fromEntries(
      compose.services.grafana.volumes.map((v) => v.split(":").slice(0, 2).reverse() as [string, string]),
    );
    const provider = load(readFileSync(join(DIR, "grafana/provisioning/dashboards/leakagent.yaml"), "utf8")) as {
      providers: Array<{ options: { path: string } }>;
    };
    const dashboards = mounts[provider.providers[0]?.options.path ?? ""];
    expect(resolve(DIR, dashboards ?? "")).toBe(join(ROOT, "deploy/grafana"));
    expect(readdirSync(join(ROOT, "deploy/grafana")).filter((f) => f.endsWith(".json")).length).toBeGreaterThan(0);
    const datasources = load(readFileSync(join(DIR, "grafana/provisioning/datasources/prometheus.yaml"), "utf8")) as {
      datasources: Array<{ type: string; url: string }>;
    };
    expect(datasources.datasources).toEqual([
      expect.objectContaining({ type: "prometheus", url: "http://prometheus:9090" }),
    ]);
  });

  describe("the upstream service", () => {
    let upstream: ChildProcess | undefined;
    afterAll(() => {
      upstream?.kill();
    });

    it("answers JSON with fake personal data in every category the agent's compose policy looks for", async () => {
      upstream = spawn(process.execPath, [join(DIR, "upstream/server.js")], {
        env: { HOST: "127.0.0.1", PORT: "0" },
        stdio: ["ignore", "pipe", "inherit"],
      });
      const lines = createInterface({ input: upstream.stdout as NodeJS.ReadableStream });
      const [line] = await new Promise<string[]>((done) => lines.once("line", (l) => done([l])));
      const port = Number(/listening on (\d+)/.exec(line ?? "")?.[1]);
      const body = await Promise.all(
        ["/api/users", "/api/orders"].map(async (path) => {
          const response = await fetch(`http://127.0.0.1:${port}${path}`);
          expect(response.headers.get("content-type")).toBe("application/json");
          return JSON.stringify(await response.json());
        }),
      );
      const text = body.join("\n");
      // The same patterns as deploy/compose/leakagent/config.yaml, in JavaScript syntax.
      expect(text).toMatch(/[a-zA-Z0-9_.+-]{2,}@[a-zA-Z0-9-]{3,}\.[a-zA-Z0-9-.]{2,}/); // email
      expect(text).toMatch(/\b\d{3}-\d{2}-\d{4}\b/); // ssn
      expect(text).toMatch(/\b4\d{3}[ -]?\d{4}[ -]?\d{4}[ -]?\d{4}\b/); // credit_card
      expect(text).toMatch(/\(\d{3}\) \d{3}-\d{4}/); // phone_number
      expect((await fetch(`http://127.0.0.1:${port}/nope`)).status).toBe(404);
    });
  });
});
