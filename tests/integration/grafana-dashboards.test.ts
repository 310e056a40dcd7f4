import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { PrometheusTelemetry } from "../../src/adapters/prometheus/prometheus-telemetry";
import { observeTransaction } from "../../src/domain/telemetry/transaction";
import { metricNamesIn, type Panel, queriesOf, shippedDashboards } from "../support/dashboards";
import { parseExposition } from "../support/exposition";
import { currentTransaction } from "../support/transactions";

// The dashboards under deploy/grafana, without a Grafana: well-formed, and reading only metrics the agent
// exposes. tests/e2e/prometheus.test.ts evaluates every query of them against a real Prometheus.

/** Every sample name the agent exposes once each kind of event has happened. */
async function exposedNames(): Promise<Set<string>> {
  const registry = new Registry();
  const telemetry = new PrometheusTelemetry(registry, "0.0.0-test");
  telemetry.transactionObserved(observeTransaction("shop", currentTransaction({ apiKey: "shop" })));
  telemetry.policyStreamOpened("shop", "10.0.0.1", "policy-1");
  telemetry.policyStreamsWaiting("shop", 1);
  telemetry.policySent("shop", "policy-1");
  telemetry.proxyTurnedAway("intruder", "10.0.0.2");
  telemetry.proxyPulled("v1/leaksignal.wasm");
  telemetry.requestRejected("malformed");
  telemetry.configReloaded(true);
  const { samples } = parseExposition(await registry.metrics());
  return new Set([...samples.keys()].map((key) => key.split("{")[0] as string));
}

// biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable syntax, not a template literal
const DATASOURCE_VARIABLE = "${datasource}";

function panelsOf(panels: readonly Panel[]): Panel[] {
  return panels.flatMap((panel) => [panel, ...panelsOf(panel.panels ?? [])]);
}

describe("the Grafana dashboards in deploy/grafana", () => {
  const dashboards = shippedDashboards();

  it("are the agent's health and the LeakSignal telemetry, each with a unique uid", () => {
    expect(dashboards.map((d) => d.file)).toEqual(["leakagent-health.json", "leaksignal-telemetry.json"]);
    expect(new Set(dashboards.map((d) => d.json.uid)).size).toBe(dashboards.length);
  });

  it("query only metrics the agent exposes", async () => {
    const exposed = await exposedNames();
    const queried = dashboards
      .flatMap(queriesOf)
      .flatMap(({ dashboard, panel, expr }) => metricNamesIn(expr).map((name) => ({ dashboard, panel, name })));
    expect(queried.length).toBeGreaterThan(20);
    expect(queried.filter(({ name }) => !exposed.has(name))).toEqual([]);
  });

  it("cover what operators watch: proxies, policies, turnaways, Wasm pulls, reloads, ingestion, event loop", () => {
    const [health, telemetry] = dashboards.map((d) =>
      queriesOf(d)
        .map((q) => q.expr)
        .join("\n"),
    );
    for (const metric of [
      "leakagent_policy_update_waiting",
      "leakagent_policy_update_send",
      "leakagent_policy_update_turnaway",
      "leakagent_proxy_pull",
      "leakagent_config_reload_total",
      "leakagent_match_inbound",
      "leakagent_rejected_total",
      "nodejs_eventloop_lag_p99_seconds",
    ]) {
      expect(health, metric).toContain(metric);
    }
    for (const metric of [
      "leaksignal_match_count_sum",
      "leaksignal_status_code",
      "leaksignal_request_time_ms_bucket",
      "leaksignal_response_time_ms_bucket",
      "leaksignal_match_time_ms_bucket",
      "leaksignal_request_size_bytes_sum",
      "leaksignal_response_size_bytes_sum",
    ]) {
      expect(telemetry, metric).toContain(metric);
    }
  });

  it("are well-formed: unique panel ids, one data source variable, defined variables, a 24-column grid", () => {
    for (const dashboard of dashboards) {
      const { json, file } = dashboard;
      const panels = panelsOf(json.panels);
      expect(new Set(panels.map((p) => p.id)).size, file).toBe(panels.length);
      const variables = json.templating.list.map((v) => v.name);
      expect(variables, file).toContain("datasource");
      for (const panel of panels) {
        expect(panel.gridPos.x + panel.gridPos.w, `${file} ${panel.title}`).toBeLessThanOrEqual(24);
        if (panel.type === "row") continue;
        expect(panel.datasource, `${file} ${panel.title}`).toEqual({ type: "prometheus", uid: DATASOURCE_VARIABLE });
        const refIds = (panel.targets ?? []).map((t) => t.refId);
        expect(refIds.length, `${file} ${panel.title}`).toBeGreaterThan(0);
        expect(new Set(refIds).size, `${file} ${panel.title}`).toBe(refIds.length);
      }
      const used = queriesOf(dashboard).flatMap(({ expr }) =>
        [...expr.matchAll(/\$\{?(\w+)/g)].map((m) => m[1] as string),
      );
      for (const name of used) {
        if (name.startsWith("__")) continue; // Grafana's own ($__rate_interval)
        expect(variables, `${file}: $${name}`).toContain(name);
      }
    }
  });
});
