import { Counter, Histogram, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { Rng } from "../../scripts/reliability/rng";
import { renderMetrics } from "../../src/adapters/prometheus/exposition";
import {
  CounterFamily,
  CounterSeries,
  HistogramFamily,
  HistogramSeries,
  labelSet,
} from "../../src/adapters/prometheus/families";

// The agent renders its hot families itself (families.ts). Whatever they are fed, they must expose
// exactly what prom-client exposes for the same metrics fed the same values, in both formats.

const LABELS = ["deployment", "policy_path", "token"] as const;
const BOUNDS = [0, 0.5, 1, 2.5, 10, 1000] as const;

/** Uniform numbers in [0, 1) from a seed, so a failure can be replayed. */
function random(seed: number): () => number {
  const rng = new Rng(seed);
  return () => rng.next();
}

interface Fed {
  readonly values: readonly string[];
  readonly value: number;
}

/** Observations over a handful of label sets, with the characters exposition formats escape. */
function feed(seed: number, count: number): Fed[] {
  const next = random(seed);
  const texts = ["shop", "", 'a"b', "back\\slash", "new\nline", "é 🔑", "/cart/checkout"];
  const pick = () => texts[Math.floor(next() * texts.length)] as string;
  const labelSets = Array.from({ length: 6 }, () => [pick(), pick(), pick()]);
  return Array.from({ length: count }, () => ({
    values: labelSets[Math.floor(next() * labelSets.length)] as string[],
    // Bucket bounds exactly, fractions, zero and values above every bound.
    value: next() < 0.2 ? (BOUNDS[Math.floor(next() * BOUNDS.length)] as number) : Math.round(next() * 3000) / 7,
  }));
}

/** The agent's families, fed like the agent feeds them: one series per label set, made on first use. */
function ownRegistry(fed: readonly Fed[]): Registry {
  const registry = new Registry();
  const counters = new Map<string, CounterSeries>();
  const histograms = new Map<string, HistogramSeries>();
  new CounterFamily({ name: "test_legacy_counter", help: "A counter without _total.", labelNames: LABELS }, () =>
    counters.values(),
  ).register(registry);
  new HistogramFamily({ name: "test_histogram_ms", help: 'Help with "quotes".', labelNames: LABELS }, BOUNDS, () =>
    histograms.values(),
  ).register(registry);
  for (const { values, value } of fed) {
    const key = values.join("\0");
    let counter = counters.get(key);
    if (!counter) {
      counter = new CounterSeries(labelSet(LABELS, values));
      counters.set(key, counter);
    }
    counter.value++;
    let histogram = histograms.get(key);
    if (!histogram) {
      histogram = new HistogramSeries(labelSet(LABELS, values), BOUNDS);
      histograms.set(key, histogram);
    }
    histogram.observe(value);
  }
  return registry;
}

function promClientRegistry(fed: readonly Fed[]): Registry {
  const registry = new Registry();
  const registers = [registry];
  const labelNames = [...LABELS];
  const counter = new Counter({
    name: "test_legacy_counter",
    help: "A counter without _total.",
    labelNames,
    registers,
  });
  const histogram = new Histogram({
    name: "test_histogram_ms",
    help: 'Help with "quotes".',
    labelNames,
    buckets: [...BOUNDS],
    registers,
  });
  for (const { values, value } of fed) {
    counter.labels(...values).inc();
    histogram.labels(...values).observe(value);
  }
  return registry;
}

async function rendered(registry: Registry, format: "prometheus" | "openmetrics"): Promise<string> {
  return Buffer.concat(await renderMetrics(registry, format)).toString("utf8");
}

describe("the agent's own metric families", () => {
  it("render exactly as prom-client renders the same metrics, in both formats", async () => {
    for (const seed of [1, 2, 3]) {
      const fed = feed(seed, 500);
      for (const format of ["prometheus", "openmetrics"] as const) {
        expect(await rendered(ownRegistry(fed), format)).toBe(await rendered(promClientRegistry(fed), format));
      }
    }
  });

  it("give prom-client's JSON form to registry.getMetricsAsJSON()", async () => {
    const fed = feed(4, 200);
    // prom-client adds `exemplar: null` to histogram samples; the rest must match.
    const json = async (registry: Registry) =>
      (await registry.getMetricsAsJSON()).map(({ values, ...family }) => ({
        ...family,
        values: values.map(({ labels, value, metricName }: { labels: object; value: number; metricName?: string }) => ({
          labels,
          value,
          metricName,
        })),
      }));
    expect(await json(ownRegistry(fed))).toEqual(await json(promClientRegistry(fed)));
  });

  it("render empty families with their help and type only", async () => {
    expect(await rendered(ownRegistry([]), "prometheus")).toBe(await rendered(promClientRegistry([]), "prometheus"));
    expect(await rendered(ownRegistry([]), "openmetrics")).toBe(
      "# HELP test_legacy_counter A counter without _total.\n# TYPE test_legacy_counter unknown\n" +
        '# HELP test_histogram_ms Help with \\"quotes\\".\n# TYPE test_histogram_ms histogram\n# EOF\n',
    );
  });

  it("render a large family in pieces, letting other work run in between", async () => {
    const registry = new Registry();
    const many = Array.from({ length: 20_000 }, (_, i) => {
      const series = new HistogramSeries(labelSet(LABELS, ["shop", `/path/${i}`, `token-${i}`]), BOUNDS);
      series.observe(i % 100);
      return series;
    });
    new HistogramFamily({ name: "test_many", help: "Many series.", labelNames: LABELS }, BOUNDS, () => many).register(
      registry,
    );
    let ticks = 0;
    const timer = setInterval(() => ticks++, 0);
    const pieces = await renderMetrics(registry, "prometheus");
    clearInterval(timer);
    const text = Buffer.concat(pieces).toString("utf8");
    expect(pieces.length).toBeGreaterThan(1);
    expect(text.split("\n").filter((line) => line.startsWith("test_many_count{")).length).toBe(many.length);
    expect(text.endsWith('token="token-19999"} 1\n')).toBe(true);
    // Only a render that yields lets a timer fire while it runs; 20k histograms take well over 10 ms.
    expect(ticks).toBeGreaterThan(0);
  });
});
