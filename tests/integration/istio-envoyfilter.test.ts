import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { load, loadAll } from "js-yaml";
import { describe, expect, it } from "vitest";
import { checkConfig } from "../../src/adapters/config-file";
import { readSettings } from "../../src/app/settings";

// deploy/istio/envoyfilter.yaml: valid against Istio's EnvoyFilter schema, and pointed at what
// deploy/kubernetes creates (the headless ingestion Service, its port, a deployment of its config).

const ROOT = resolve(__dirname, "../..");
const read = (path: string) => readFileSync(join(ROOT, path), "utf8");
// biome-ignore lint/suspicious/noExplicitAny: Istio/Envoy YAML, checked field by field
const filter = load(read("deploy/istio/envoyfilter.yaml")) as any;
// biome-ignore lint/suspicious/noExplicitAny: a patch of the EnvoyFilter above
const patch = (applyTo: string): any =>
  filter.spec.configPatches.find((p: { applyTo: string }) => p.applyTo === applyTo);

describe("deploy/istio/envoyfilter.yaml", () => {
  it("is a valid Istio EnvoyFilter (and the schema does catch a broken one)", async () => {
    const { EnvoyFilter } = await import("@kubernetes-models/istio/networking.istio.io/v1alpha3/EnvoyFilter");
    expect(() => new EnvoyFilter(filter).validate()).not.toThrow();
    const broken = structuredClone(filter);
    broken.spec.configPatches[0].applyTo = "LISTENER_FILTER_CHAIN";
    expect(() => new EnvoyFilter(broken).validate()).toThrow(/applyTo/);
  });

  it("points the leaksignal_infra cluster and the Wasm download at the headless ingestion Service, over h2c", () => {
    const namespace = (load(read("deploy/kubernetes/kustomization.yaml")) as { namespace: string }).namespace;
    const headless = (
      loadAll(read("deploy/kubernetes/services.yaml")) as Array<{
        metadata: { name: string };
        spec: { clusterIP?: string; ports: Array<{ port: number }> };
      }>
    ).find((s) => s.spec.clusterIP === "None");
    const port = readSettings({}).ingestionBind.port;
    expect(headless?.spec.ports[0]?.port).toBe(port);
    const host = `${headless?.metadata.name}.${namespace}.svc.cluster.local`;

    const cluster = patch("CLUSTER").patch.value;
    expect(cluster).toMatchObject({ name: "leaksignal_infra", type: "STRICT_DNS", http2_protocol_options: {} });
    expect(cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address).toEqual({
      address: host,
      port_value: port,
    });

    const extension = patch("EXTENSION_CONFIG").patch.value;
    const wasm = extension.typed_config.config;
    const settings = load(wasm.configuration.value) as Record<string, string>;
    expect(settings.upstream_cluster).toBe(cluster.name);
    expect(settings.upstream_host).toBe(`${host}:${port}`);
    const remote = wasm.vm_config.code.remote;
    expect(remote.http_uri.cluster).toBe(cluster.name);
    expect(remote.http_uri.uri).toMatch(
      new RegExp(`^http://${host.replaceAll(".", "\\.")}:${port}/proxy/[\\w.-]+/leaksignal\\.wasm$`),
    );
    expect(remote.sha256).toMatch(/^[0-9a-f]{64}$/);

    // The api_key is a deployment of the config deploy/kubernetes ships.
    const { config } = checkConfig(read("deploy/kubernetes/config.yaml"), "config.yaml");
    expect(config?.deployments.names()).toContain(settings.api_key);
    // The HTTP filter inserted before the router is the extension config defined above.
    expect(patch("HTTP_FILTER").patch.value.name).toBe(extension.name);
  });
});
