import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { HelpShown, numberFlag, RESULTS_DIR, readFlags, writeJson } from "./cli-options";
import { FUZZ_DEFAULTS, fuzzTable, runFuzz } from "./fuzz-run";

const USAGE = `npm run fuzz -- [--count N] [--seconds S] [--seed N] [--concurrency N] [--batch N] [--kinds a,b] [--json PATH]

Starts the built agent (dist/app/main.js; run \`npm run build\` first) on loopback ephemeral ports and throws
malformed inputs at it, checking after every batch that it is alive and still answers Ping, GET / and /metrics.
--kinds runs only the input kinds whose name contains one of the words (e.g. --kinds smuggling,preface).
Defaults: --count ${FUZZ_DEFAULTS.count} --seconds ${FUZZ_DEFAULTS.seconds} --concurrency ${FUZZ_DEFAULTS.concurrency} --batch ${FUZZ_DEFAULTS.batchSize}, a random seed (printed; pass it back with --seed to replay).
Exits 1 when the agent crashed, failed a health check or answered a valid call wrongly.`;

async function main(): Promise<void> {
  const flags = readFlags(
    process.argv.slice(2),
    ["count", "seconds", "seed", "concurrency", "batch", "kinds", "json"],
    USAGE,
  );
  if (!existsSync(resolve(__dirname, "../../dist/app/main.js")))
    throw new Error("dist/app/main.js missing: run `npm run build` first");
  const seed = numberFlag(flags, "seed", Math.floor(Math.random() * 2 ** 32)) >>> 0;
  console.log(`fuzz seed ${seed}`);
  const report = await runFuzz({
    seed,
    count: numberFlag(flags, "count", FUZZ_DEFAULTS.count),
    seconds: numberFlag(flags, "seconds", FUZZ_DEFAULTS.seconds),
    concurrency: Math.max(1, numberFlag(flags, "concurrency", FUZZ_DEFAULTS.concurrency)),
    batchSize: Math.max(1, numberFlag(flags, "batch", FUZZ_DEFAULTS.batchSize)),
    kinds: flags.get("kinds")?.split(",").filter(Boolean),
    onBatch: ({ sent, elapsedSeconds, rssBytes }) =>
      console.log(
        `  ${sent} inputs, ${elapsedSeconds.toFixed(0)} s, agent RSS ${rssBytes === undefined ? "?" : (rssBytes / 2 ** 20).toFixed(1)} MiB (fuzzer ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB)`,
      ),
  });
  console.log(`\n${fuzzTable(report)}`);
  const path = writeJson(flags.get("json") ?? join(RESULTS_DIR, `fuzz-${seed}.json`), report);
  console.log(`\nJSON report: ${path}`);
  if (report.crashes > 0 || report.healthChecks.failed.length > 0 || report.validCallFailures > 0) process.exitCode = 1;
}

main().catch((error: unknown) => {
  if (error instanceof HelpShown) return;
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
