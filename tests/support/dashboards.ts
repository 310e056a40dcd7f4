import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";

/** deploy/grafana in this repository. */
export const DASHBOARD_DIR = resolve(__dirname, "../../deploy/grafana");

export interface DashboardQuery {
  readonly dashboard: string;
  readonly panel: string;
  readonly expr: string;
}

export interface Dashboard {
  readonly file: string;
  readonly json: {
    uid: string;
    title: string;
    panels: Panel[];
    templating: { list: Array<{ name: string; type: string; query?: unknown; definition?: string }> };
  };
}

export interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type: string; uid: string };
  gridPos: { h: number; w: number; x: number; y: number };
  targets?: Array<{ refId: string; expr: string; datasource?: { type: string; uid: string } }>;
  panels?: Panel[];
}

/** The dashboards this repository ships. */
export function shippedDashboards(): Dashboard[] {
  return readdirSync(DASHBOARD_DIR)
    .filter((name) => name.endsWith(".json"))
    .sort()
    .map((file) => ({ file, json: JSON.parse(readFileSync(join(DASHBOARD_DIR, file), "utf8")) }));
}

/** Every panel query of a dashboard, rows' nested panels included. */
export function queriesOf(dashboard: Dashboard): DashboardQuery[] {
  const queries: DashboardQuery[] = [];
  const visit = (panels: readonly Panel[]) => {
    for (const panel of panels) {
      for (const target of panel.targets ?? []) {
        queries.push({ dashboard: dashboard.file, panel: panel.title, expr: target.expr });
      }
      visit(panel.panels ?? []);
    }
  };
  visit(dashboard.json.panels);
  return queries;
}

/**
 * What Grafana sends Prometheus for a query: `$name`, `${name}` and `${name:regex}` replaced by the
 * given values (`$__rate_interval` included). An unknown variable is an error, so a typo cannot pass.
 */
export function substitute(expr: string, values: Readonly<Record<string, string>>): string {
  return expr.replace(
    /\$\{(\w+)(?::\w+)?\}|\$(\w+)/g,
    (whole, braced: string | undefined, bare: string | undefined) => {
      const name = braced ?? bare ?? "";
      const value = values[name];
      if (value === undefined) throw new Error(`unknown dashboard variable ${whole} in ${expr}`);
      return value;
    },
  );
}

/** Metric names a PromQL expression reads (the families this agent and Node.js expose). */
export function metricNamesIn(expr: string): string[] {
  return [...new Set(expr.match(/\b(?:leaksignal|leakagent|nodejs|process)_[a-z0-9_]+/g) ?? [])];
}
