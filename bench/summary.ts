import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { FanoutResults } from "./fanout";
import { INGEST_LABELS, type IngestResults } from "./ingest";
import { LATENCY_LABELS, LATENCY_TARGETS, type LatencyResults } from "./latency";
import type { MemoryResults } from "./memory";
import type { ScrapeResults } from "./scrape";
import { DEFAULT_RESULTS_DIR, type MachineDetails, median } from "./support/report";

// The results of the last run as Markdown, ready to paste into docs/performance.md: what `npm run bench`
// prints at the end and writes to <results>/summary.md. `npx tsx bench/summary.ts [--results DIR]` makes it
// again from the JSON files.

interface Results {
  ingest?: IngestResults;
  latency?: LatencyResults;
  scrape?: ScrapeResults;
  memory?: MemoryResults;
  fanout?: FanoutResults;
}

/** Writes `<dir>/summary.md` from the JSON results found there; returns the Markdown. */
export function writeSummary(dir: string): string {
  const read = <T>(name: string): T | undefined => {
    const path = join(dir, `${name}.json`);
    return existsSync(path) ? (JSON.parse(readFileSync(path, "utf8")) as T) : undefined;
  };
  const results: Results = {
    ingest: read("ingest"),
    latency: read("latency"),
    scrape: read("scrape"),
    memory: read("memory"),
    fanout: read("fanout"),
  };
  const markdown = summary(results);
  writeFileSync(join(dir, "summary.md"), markdown);
  return markdown;
}

function summary(results: Results): string {
  const { ingest, latency, scrape, memory, fanout } = results;
  const measured = [ingest, latency, scrape, memory, fanout].flatMap((r) => (r ? [r.machine] : []));
  const out: string[] = [];
  if (measured[0]) {
    const dates = measured.map((m) => m.measuredAt ?? "").sort();
    out.push(`Measured ${dates[0]} to ${dates[dates.length - 1]} on ${machineLine(measured[0])}`, "");
  }

  // Ratios are medians over runs of the ratio within each run; rates and times are medians over runs.
  out.push("| Benchmark | Target | Measured (medians) | Met |", "| --- | --- | --- | --- |");
  const verdict = (met: boolean) => (met ? "yes" : "**no**");
  if (ingest) {
    const { median: m, ratios, targets } = ingest;
    out.push(
      `| Ingest | (a) ≥ 0.7 × (b) | ${ratio(ratios.agentToNoop)} (${rate(m.agent)} vs ${rate(m.noop)} MatchData/s; by CPU per call ${ratio(ratios.agentToNoopByCpu)}) | ${verdict(targets.agentToNoop)} |`,
      `| Ingest | (a) ≥ 1.5 × (c) | ${ratio(ratios.agentToGrpcJs)} (${rate(m.agent)} vs ${rate(m.grpcJs)} MatchData/s; by CPU per call ${ratio(ratios.agentToGrpcJsByCpu)}) | ${verdict(targets.agentToGrpcJs)} |`,
    );
  }
  if (latency) {
    out.push(
      `| Latency | p99 (a) ≤ 2 × p99 (b) at the same rate | ${ratio(latency.p99Ratio)} (${num(latency.median.agent.p99Us / 1000)} vs ${num(latency.median.noop.p99Us / 1000)} ms at ${rate(latency.rate)}/s) | ${verdict(latency.target)} |`,
    );
  }
  if (scrape) {
    const worst = Math.max(...scrape.render.map((r) => r.usPerLine));
    const stall = Math.max(scrape.ingest.stallDuringScrapesMs, ...scrape.render.map((r) => r.stallMs));
    out.push(
      `| Scrape | ≤ 2 µs per exposition line | ${worst.toFixed(2)} µs at worst | ${verdict(scrape.targets.usPerLine)} |`,
      `| Scrape | ingest while scraping ≥ 0.9 × without | ${ratio(scrape.ingest.ratio)} (${rate(median(scrape.ingest.withScrapes))} vs ${rate(median(scrape.ingest.withoutScrapes))} MatchData/s) | ${verdict(scrape.targets.ingestRatio)} |`,
      `| Scrape | no event-loop stall over 100 ms | ${num(stall)} ms at most during a scrape (load alone, no scrape: ${num(scrape.ingest.stallWithoutScrapesMs)} ms) | ${verdict(scrape.targets.stall)} |`,
    );
  }
  if (memory) {
    out.push(
      `| Memory | ≤ 256 MiB RSS with 100k live series | ${num(memory.median.peakMiB)} MiB peak, ${memory.median.bytesPerSeries} bytes per series | ${verdict(memory.target)} |`,
    );
  }
  if (fanout) {
    out.push(
      `| Fan-out | ${fanout.options.streams} streams within 1 s | ${Math.round(fanout.median.ms)} ms | ${verdict(fanout.target)} |`,
    );
  }

  if (ingest) {
    const o = ingest.options;
    out.push(
      "",
      `**Ingest**: ${ingest.requestBytes}-byte MatchDataRequest, h2load -c ${o.clients} -m ${o.streams}, ${o.seconds} s after ${o.warmUpSeconds} s warm-up, ${o.runs} interleaved runs; grpc-status sampled with ${o.probeCalls} calls per run under load.`,
      "",
      "| Target | Median MatchData/s | Runs | Server CPU µs/call | grpc-status 0 |",
      "| --- | --- | --- | --- | --- |",
    );
    for (const name of ["agent", "noop", "grpcJs"] as const) {
      const runs = ingest.runs[name];
      out.push(
        `| ${INGEST_LABELS[name]} | ${rate(ingest.median[name])} | ${runs.map((r) => rate(r.requestsPerSecond)).join(", ")} | ${ingest.cpuUsPerRequest[name].toFixed(1)} | ${runs.reduce((n, r) => n + r.probedOk, 0)}/${runs.reduce((n, r) => n + r.probed, 0)} |`,
      );
    }
  }
  if (latency) {
    out.push(
      "",
      `**Latency**: ${rate(latency.rate)} MatchData/s offered (half of ${rate(latency.maxRate)}), h2load -c ${latency.options.clients}, ${latency.options.seconds} s x ${latency.options.runs} interleaved runs.`,
      "",
      "| Target | Achieved MatchData/s | p50 ms | p99 ms | p99 per run ms |",
      "| --- | --- | --- | --- | --- |",
    );
    for (const name of LATENCY_TARGETS) {
      const m = latency.median[name];
      out.push(
        `| ${LATENCY_LABELS[name]} | ${rate(m.requestsPerSecond)} | ${num(m.p50Us / 1000)} | ${num(m.p99Us / 1000)} | ${latency.runs[name].map((r) => num((r.p99Us ?? Number.NaN) / 1000)).join(", ")} |`,
      );
    }
    out.push(
      "",
      `p99 ratios, medians of the runs' ratios: (a)/(b) ${ratio(latency.p99Ratio)}; (b')/(b) ${ratio(latency.loadedToNoop)}, the agent's code loaded and idle; (a)/(b') ${ratio(latency.agentToLoaded)}, the agent's work on top.`,
    );
  }
  if (scrape) {
    out.push(
      "",
      `**Scrape**: /metrics of an otherwise idle agent, median of ${scrape.options.scrapes} scrapes per format and level.`,
      "",
      "| Format | Series (lines) | Size MiB | Scrape ms | µs/line | Longest stall ms |",
      "| --- | --- | --- | --- | --- | --- |",
    );
    for (const r of scrape.render) {
      out.push(
        `| ${r.format} | ${r.series} | ${(r.bytes / 2 ** 20).toFixed(1)} | ${num(r.ms)} | ${r.usPerLine.toFixed(2)} | ${num(r.stallMs)} |`,
      );
    }
    const i = scrape.ingest;
    out.push(
      "",
      `Ingest at ${i.series} live series, ${scrape.options.seconds} s runs alternating without and with a scrape every ${scrape.options.scrapeIntervalSeconds} s (${scrape.options.runs} each, ${i.scrapesUnderLoad} scrapes): without ${i.withoutScrapes.map(rate).join(", ")}; with ${i.withScrapes.map(rate).join(", ")} MatchData/s.`,
    );
  }
  if (memory) {
    const m = memory.median;
    out.push(
      "",
      `**Memory**: ${m.series} live series, median of ${memory.options.runs} fresh agents: RSS ${num(m.startMiB)} MiB at start, ${num(m.populatedMiB)} MiB populated, ${num(m.scrapedMiB)} MiB after ${memory.options.scrapes} scrapes, peak ${num(m.peakMiB)} MiB; ${m.bytesPerSeries} bytes per series.`,
    );
  }
  if (fanout) {
    out.push(
      "",
      `**Fan-out**: ${fanout.options.changes} config changes to ${fanout.options.streams} open streams: first stream ${Math.round(fanout.median.firstMs)} ms, all streams ${fanout.ms.map((v) => Math.round(v)).join(", ")} ms; every stream got every policy: ${fanout.correct}.`,
    );
  }
  return `${out.join("\n")}\n`;
}

function machineLine(m: MachineDetails): string {
  return `${m.cpu}, ${m.cores} CPUs, ${m.memoryGiB} GiB, Linux ${m.kernel} (${m.arch}), Node ${m.node}, ${m.h2load ?? "no h2load"}; server and load generator on separate cores: ${m.pinned ? "yes" : "no"}.`;
}

const rate = (value: number) => Math.round(value).toLocaleString("en-US");
const ratio = (value: number) => value.toFixed(2);
const num = (value: number) => (value >= 100 ? value.toFixed(0) : value.toFixed(1));

if (require.main === module) {
  const { values } = parseArgs({ options: { results: { type: "string", default: DEFAULT_RESULTS_DIR } } });
  console.log(writeSummary(values.results));
}
