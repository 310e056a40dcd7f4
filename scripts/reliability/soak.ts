import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { HelpShown, numberFlag, RESULTS_DIR, readFlags, writeJson } from "./cli-options";
import { runSoak, SOAK_DEFAULTS, soakSummary } from "./soak-run";

const USAGE = `npm run soak -- [--minutes N] [--rate R] [--generator h2load|node] [--connections N] [--streams N]
                [--warmup-minutes N] [--json PATH]

Starts the built agent (dist/app/main.js; run \`npm run build\` first) on loopback ephemeral ports and sends it
steady MatchData load for --minutes (default 10) at --rate requests/s (default: half of a 5 s maximum measured
first), scraping /metrics every ${SOAK_DEFAULTS.scrapeSeconds} s and holding --streams policy streams open (default ${SOAK_DEFAULTS.policyStreams}).
Load comes from h2load when installed, else from a node:http2 client. Exits 1 on any error or when the agent's
RSS grew 10% or more after the warm-up (--warmup-minutes, default 3, at most a third of the run): V8 sizes
its heap for the load during the first minutes, a one-time step that is not a leak.`;

async function main(): Promise<void> {
  const flags = readFlags(
    process.argv.slice(2),
    ["minutes", "rate", "generator", "connections", "streams", "warmup-minutes", "json"],
    USAGE,
  );
  if (!existsSync(resolve(__dirname, "../../dist/app/main.js")))
    throw new Error("dist/app/main.js missing: run `npm run build` first");
  const generator = flags.get("generator");
  if (generator !== undefined && generator !== "h2load" && generator !== "node")
    throw new Error(`--generator must be h2load or node`);
  const seconds = numberFlag(flags, "minutes", 10) * 60;
  const report = await runSoak({
    seconds,
    rate: flags.has("rate") ? numberFlag(flags, "rate", 0) : undefined,
    generator,
    connections: Math.max(1, numberFlag(flags, "connections", SOAK_DEFAULTS.connections)),
    policyStreams: numberFlag(flags, "streams", SOAK_DEFAULTS.policyStreams),
    scrapeSeconds: SOAK_DEFAULTS.scrapeSeconds,
    warmupSeconds: Math.min(numberFlag(flags, "warmup-minutes", 3) * 60, seconds / 3),
    segmentSeconds: SOAK_DEFAULTS.segmentSeconds,
    onProgress: (line) => console.log(`  ${line}`),
  });
  console.log(`\n${soakSummary(report)}`);
  const path = writeJson(
    flags.get("json") ?? join(RESULTS_DIR, `soak-${new Date().toISOString().replace(/[:.]/g, "-")}.json`),
    report,
  );
  console.log(`\nJSON report: ${path}`);
  if (report.errors > 0 || (report.rss.growthPercent ?? 0) >= 10) process.exitCode = 1;
}

main().catch((error: unknown) => {
  if (error instanceof HelpShown) return;
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
