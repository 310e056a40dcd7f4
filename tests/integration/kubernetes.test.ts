import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { posix, resolve } from "node:path";
import { loadAll } from "js-yaml";
import { beforeAll, describe, expect, it } from "vitest";
import { checkConfig } from "../../src/adapters/config-file";
import { SHUTDOWN_DEADLINE_MS } from "../../src/app/main";
import { DEFAULT_MAX_CONNECTION_AGE_SECONDS, readSettings } from "../../src/app/settings";

// deploy/kubernetes rendered by the real kustomize (kubectl kustomize), each object validated against
// the Kubernetes OpenAPI schemas (kubernetes-models) or the Prometheus Operator CRD schema, then checked
// against what the agent itself does: its settings, ports, probes, config validation and shutdown.

const ROOT = resolve(__dirname, "../..");
const KUBECTL = spawnSync("kubectl", ["version", "--client"], { encoding: "utf8" });
const SKIP =
  KUBECTL.error || KUBECTL.status !== 0
    ? "kubectl is not installed (it renders deploy/kubernetes with `kubectl kustomize`)"
    : undefined;
if (SKIP) console.warn(`skipping the Kubernetes manifest tests: ${SKIP}`);

interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  // biome-ignore lint/suspicious/noExplicitAny: rendered YAML, checked field by field below
  spec?: any;
  data?: Record<string, string>;
}

type Validate = (object: KubeObject) => void;

/** The agent's settings with nothing set: its default ports. */
const DEFAULTS = readSettings({});

/** The schema each kind is validated against; a kind not listed here fails the test. */
async function validators(): Promise<Record<string, Validate>> {
  const check =
    <T extends { validate(): void }>(Model: new (data: never) => T): Validate =>
    (object) =>
      new Model(object as never).validate();
  return {
    "v1/Namespace": check((await import("kubernetes-models/v1/Namespace")).Namespace),
    "v1/ConfigMap": check((await import("kubernetes-models/v1/ConfigMap")).ConfigMap),
    "v1/Service": check((await import("kubernetes-models/v1/Service")).Service),
    "apps/v1/Deployment": check((await import("kubernetes-models/apps/v1/Deployment")).Deployment),
    "autoscaling/v2/HorizontalPodAutoscaler": check(
      (await import("kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler")).HorizontalPodAutoscaler,
    ),
    "policy/v1/PodDisruptionBudget": check(
      (await import("kubernetes-models/policy/v1/PodDisruptionBudget")).PodDisruptionBudget,
    ),
    "monitoring.coreos.com/v1/ServiceMonitor": check(
      (await import("@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor")).ServiceMonitor,
    ),
  };
}

const matches = (selector: Record<string, string>, labels: Record<string, string> = {}) =>
  Object.entries(selector).every(([key, value]) => labels[key] === value);

describe.skipIf(SKIP)("deploy/kubernetes", () => {
  let objects: KubeObject[];
  const one = (kind: string, name?: string): KubeObject => {
    const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
    expect(found, `${kind} ${name ?? ""}`).toHaveLength(1);
    return found[0] as KubeObject;
  };
  const deployment = () => one("Deployment", "leakagent");
  const podLabels = () => deployment().spec.template.metadata.labels as Record<string, string>;
  const container = () => deployment().spec.template.spec.containers[0];
  const env = (): Record<string, string> =>
    Object.fromEntries(container().env.map((e: { name: string; value: string }) => [e.name, e.value]));
  const containerPort = (name: string): number =>
    container().ports.find((p: { name: string }) => p.name === name)?.containerPort;

  beforeAll(() => {
    const rendered = spawnSync("kubectl", ["kustomize", "deploy/kubernetes"], { cwd: ROOT, encoding: "utf8" });
    expect(rendered.stderr).toBe("");
    expect(rendered.status).toBe(0);
    objects = loadAll(rendered.stdout) as KubeObject[];
  });

  it("renders the objects a cluster needs, all in the leakagent namespace", () => {
    expect(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual(
      [
        "ConfigMap/leakagent-config",
        "Deployment/leakagent",
        "HorizontalPodAutoscaler/leakagent",
        "Namespace/leakagent",
        "PodDisruptionBudget/leakagent",
        "Service/ingestion",
        "Service/ingestion-headless",
        "Service/leakagent-metrics",
        "ServiceMonitor/leakagent",
      ].sort(),
    );
    for (const object of objects.filter((o) => o.kind !== "Namespace")) {
      expect(object.metadata.namespace, object.kind).toBe("leakagent");
    }
  });

  it("validates every object against its schema", async () => {
    const schemas = await validators();
    const problems: string[] = [];
    for (const object of objects) {
      const validate = schemas[`${object.apiVersion}/${object.kind}`];
      if (!validate) {
        problems.push(`${object.apiVersion} ${object.kind}: no schema to validate against`);
        continue;
      }
      try {
        validate(object);
      } catch (error) {
        problems.push(`${object.kind}/${object.metadata.name}: ${(error as Error).message}`);
      }
    }
    expect(problems).toEqual([]);
  });

  it("the schemas catch a broken object (the check can fail)", async () => {
    const schemas = await validators();
    const broken = structuredClone(deployment());
    broken.spec.template.spec.containers[0].ports[0].containerPort = "8121";
    expect(() => schemas["apps/v1/Deployment"]?.(broken)).toThrow(/containerPort must be integer/);
  });

  it("ships a config the agent accepts, mounted where LS_CONFIG_PATH points, as a directory", () => {
    const configMap = one("ConfigMap", "leakagent-config");
    const configPath = env().LS_CONFIG_PATH as string;
    const key = posix.basename(configPath);
    const text = configMap.data?.[key] as string;
    expect(text).toBe(readFileSync(resolve(ROOT, "deploy/kubernetes/config.yaml"), "utf8"));
    const { errors, warnings, config } = checkConfig(text, key, { strict: true });
    expect([...errors, ...warnings]).toEqual([]);
    expect(config?.deployments.names()).toContain("example");

    const volume = deployment().spec.template.spec.volumes.find(
      (v: { configMap?: { name: string } }) => v.configMap?.name === configMap.metadata.name,
    );
    const mount = container().volumeMounts.find((m: { name: string }) => m.name === volume?.name);
    expect(mount?.mountPath).toBe(posix.dirname(configPath));
    // A subPath mount would never see ConfigMap updates, and hot reload would silently stop.
    expect(mount?.subPath).toBeUndefined();
    expect(mount?.readOnly).toBe(true);
  });

  it("runs the agent with settings it accepts, on the ports it listens on", () => {
    const settings = readSettings(env());
    for (const name of Object.keys(env())) expect(name, "an env var the agent or Node reads").toMatch(/^(LS_|NODE_)/);
    expect(containerPort("ingestion")).toBe(settings.ingestionBind.port);
    expect(containerPort("metrics")).toBe(settings.prometheusBind.port);
    // The manifests keep the agent's defaults; a changed default must be changed here too.
    expect(settings.ingestionBind).toEqual(DEFAULTS.ingestionBind);
    expect(settings.prometheusBind).toEqual(DEFAULTS.prometheusBind);
    expect(settings.maxConnectionAgeSeconds).toBe(DEFAULT_MAX_CONNECTION_AGE_SECONDS);
    // The heap must fit in the memory limit, with room for buffers and the rest of the process.
    const heapMiB = Number(/--max-old-space-size=(\d+)/.exec(env().NODE_OPTIONS ?? "")?.[1]);
    const limitMiB = Number(/^(\d+)Mi$/.exec(container().resources.limits.memory)?.[1]);
    expect(heapMiB).toBeLessThanOrEqual(limitMiB * 0.8);
  });

  it("probes liveness at GET / and readiness at GET /ready on the ingestion port", () => {
    expect(container().livenessProbe.httpGet).toEqual({ path: "/", port: "ingestion" });
    // /ready turns 503 first thing on SIGTERM (tests/e2e/shutdown.test.ts); / stays 200 until the port closes.
    expect(container().readinessProbe.httpGet).toEqual({ path: "/ready", port: "ingestion" });
    expect(containerPort("ingestion")).toBe(DEFAULTS.ingestionBind.port);
  });

  it("requests 500m CPU and 256Mi, runs as non-root on a read-only root filesystem", () => {
    expect(container().resources.requests).toEqual({ cpu: "500m", memory: "256Mi" });
    const pod = deployment().spec.template.spec;
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(pod.securityContext.runAsUser).toBeGreaterThan(0);
    expect(container().securityContext).toMatchObject({
      runAsNonRoot: true,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
    });
    expect(pod.automountServiceAccountToken).toBe(false);
  });

  it("gives the agent the time its shutdown takes, and a little more", () => {
    const grace = deployment().spec.template.spec.terminationGracePeriodSeconds;
    expect(grace * 1000).toBeGreaterThan(SHUTDOWN_DEADLINE_MS);
    expect(grace * 1000).toBeLessThanOrEqual(SHUTDOWN_DEADLINE_MS + 10_000);
  });

  it("exposes ingestion on a Service and a headless Service, and metrics on a third", () => {
    const ingestion = one("Service", "ingestion");
    const headless = one("Service", "ingestion-headless");
    const metrics = one("Service", "leakagent-metrics");
    for (const service of [ingestion, headless, metrics]) {
      expect(matches(service.spec.selector, podLabels()), service.metadata.name).toBe(true);
    }
    for (const service of [ingestion, headless]) {
      expect(service.spec.ports).toEqual([
        expect.objectContaining({ port: DEFAULTS.ingestionBind.port, targetPort: "ingestion" }),
      ]);
    }
    expect(ingestion.spec.clusterIP).toBeUndefined();
    expect(headless.spec.clusterIP).toBe("None");
    expect(metrics.spec.ports).toEqual([
      expect.objectContaining({ name: "metrics", port: DEFAULTS.prometheusBind.port, targetPort: "metrics" }),
    ]);
  });

  it("has Prometheus Operator scrape the metrics Service at /metrics", () => {
    const monitor = one("ServiceMonitor", "leakagent");
    const selected = objects.filter(
      (o) => o.kind === "Service" && matches(monitor.spec.selector.matchLabels, o.metadata.labels),
    );
    expect(selected.map((s) => s.metadata.name)).toEqual(["leakagent-metrics"]);
    expect(monitor.spec.endpoints).toEqual([expect.objectContaining({ port: "metrics", path: "/metrics" })]);
  });

  it("autoscales 2 to 10 pods at 50 % CPU, and keeps all but one through disruptions", () => {
    const hpa = one("HorizontalPodAutoscaler", "leakagent");
    expect(hpa.spec.scaleTargetRef).toEqual({ apiVersion: "apps/v1", kind: "Deployment", name: "leakagent" });
    expect(hpa.spec.minReplicas).toBe(2);
    expect(hpa.spec.maxReplicas).toBe(10);
    expect(hpa.spec.metrics).toEqual([
      { type: "Resource", resource: { name: "cpu", target: { type: "Utilization", averageUtilization: 50 } } },
    ]);
    const pdb = one("PodDisruptionBudget", "leakagent");
    expect(matches(pdb.spec.selector.matchLabels, podLabels())).toBe(true);
    expect(pdb.spec.maxUnavailable).toBe(1);
    expect(deployment().spec.replicas).toBe(hpa.spec.minReplicas);
  });

  it("pins the image to this package's version", () => {
    const { version } = JSON.parse(readFileSync(resolve(ROOT, "package.json"), "utf8")) as { version: string };
    expect(container().image).toBe(`leakagent:${version}`);
  });
});
