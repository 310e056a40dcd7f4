import { type ClientHttp2Session, connect as connectH2 } from "node:http2";
import { MatchDataRequest, UpdatePolicyRequest } from "../../src/generated/leaksignal";
import { AgentProcess } from "../../tests/support/agent-process";
import { parseExposition, seriesKey } from "../../tests/support/exposition";
import { currentTransaction } from "../../tests/support/transactions";
import { hasH2load, type LoadResult, runLoad } from "./load";
import { grpcFrame, rssBytes } from "./wire";

export interface SoakOptions {
  readonly seconds: number;
  /** Requests per second; undefined: half of a quick maximum measured first. */
  readonly rate?: number | undefined;
  readonly generator?: "h2load" | "node" | undefined;
  readonly connections: number;
  readonly policyStreams: number;
  readonly scrapeSeconds: number;
  /** RSS growth is measured from the end of the warm-up. */
  readonly warmupSeconds: number;
  /** Length of each load segment (one h2load run each); throughput is reported per segment. */
  readonly segmentSeconds: number;
  readonly onProgress?: (line: string) => void;
}

export const SOAK_DEFAULTS = { connections: 4, policyStreams: 6, scrapeSeconds: 5, segmentSeconds: 60 } as const;

export interface SoakReport {
  readonly generator: "h2load" | "node";
  readonly seconds: number;
  readonly measuredMaxPerSecond: number | undefined;
  readonly ratePerSecond: number;
  readonly sent: number;
  readonly throughputPerSecond: number;
  /** Must be 0: failed calls, reports the agent did not count, rejections, failed scrapes, policy streams lost. */
  readonly errors: number;
  readonly errorDetails: {
    readonly failedCalls: number;
    readonly uncounted: number;
    readonly rejected: number;
    readonly failedScrapes: number;
    readonly policyStreamsLost: number;
  };
  readonly scrapes: { readonly count: number; readonly maxMs: number };
  readonly rss: {
    readonly afterWarmupBytes: number | undefined;
    readonly endBytes: number | undefined;
    readonly maxBytes: number | undefined;
    /** (end - after warm-up) / after warm-up, in percent; each the median of three samples. */
    readonly growthPercent: number | undefined;
    /** Least-squares trend of RSS after the warm-up: a leak shows as a steady positive slope. */
    readonly trendMiBPerMinute: number | undefined;
  };
  readonly segments: ReadonlyArray<{ readonly seconds: number; readonly perSecond: number; readonly failed: number }>;
  readonly samples: ReadonlyArray<{
    readonly t: number;
    readonly rssBytes: number | undefined;
    readonly scrapeMs: number;
  }>;
}

const SOAK_CONFIG = `
policies:
  storefront:
    categories:
      email:
        - regex: "[a-zA-Z0-9_.+-]{2,}@[a-zA-Z0-9-]{3,}\\\\.[a-zA-Z0-9-.]{2,}"
    endpoints:
      - matches: "**"
        config:
          email: {}
  backoffice:
    endpoints:
      - matches: "**"
api_keys:
  backoffice: [soak-secret-key]
`;

/** Starts the built agent, loads it steadily with MatchData while scraping /metrics and holding policy streams. */
export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const generator = options.generator ?? (hasH2load() ? "h2load" : "node");
  const agent = await AgentProcess.serving({ config: SOAK_CONFIG });
  const pid = agent.child.pid ?? 0;
  const progress = options.onProgress ?? (() => {});
  const body = grpcFrame(
    MatchDataRequest.encode(currentTransaction({ apiKey: "storefront", token: "", ip: "10.0.0.1" })).finish(),
  );
  const streams = openPolicyStreams(agent.ingestionPort, ["storefront", "soak-secret-key"], options.policyStreams);
  try {
    await streams.allReceived;
    let measuredMax: number | undefined;
    let rate = options.rate;
    if (rate === undefined) {
      const quick = await runLoad(
        { port: agent.ingestionPort, body, seconds: 5, rate: undefined, connections: options.connections },
        generator,
      );
      measuredMax = Math.round(quick.succeeded / quick.seconds);
      rate = Math.max(1, Math.round(measuredMax / 2));
      progress(`measured maximum ${measuredMax}/s with ${generator}; soaking at ${rate}/s`);
    }
    const before = await counters(agent);

    const samples: Array<{ t: number; rssBytes: number | undefined; scrapeMs: number }> = [];
    let failedScrapes = 0;
    const started = Date.now();
    const scraper = setInterval(async () => {
      const t0 = performance.now();
      try {
        const response = await fetch(`http://127.0.0.1:${agent.metricsPort}/metrics`);
        await response.text();
        if (response.status !== 200) failedScrapes++;
      } catch {
        failedScrapes++;
      }
      samples.push({ t: (Date.now() - started) / 1000, rssBytes: rssBytes(pid), scrapeMs: performance.now() - t0 });
    }, options.scrapeSeconds * 1000);

    const segments: LoadResult[] = [];
    try {
      for (let left = options.seconds; left > 0.5; left -= options.segmentSeconds) {
        const seconds = Math.min(options.segmentSeconds, left);
        const result = await runLoad(
          { port: agent.ingestionPort, body, seconds, rate, connections: options.connections },
          generator,
        );
        segments.push(result);
        progress(
          `${Math.round((Date.now() - started) / 1000)} s: ${result.requestsPerSecond}/s, ${result.failed} failed, agent RSS ${mib(rssBytes(pid))}`,
        );
      }
    } finally {
      clearInterval(scraper);
    }
    const seconds = (Date.now() - started) / 1000;
    const after = await counters(agent);
    const failedCalls = segments.reduce((sum, s) => sum + s.failed, 0);
    const succeeded = segments.reduce((sum, s) => sum + s.succeeded, 0);
    const counted = after.inbound - before.inbound;
    // h2load abandons the calls in flight when its time is up: the agent may count a few more than it saw
    // answered, never fewer (a 200 whose grpc-status was not OK is not counted, and also shows as rejected).
    const uncounted = Math.max(0, succeeded - counted);
    const rejected = after.rejected - before.rejected;
    const lost = streams.lost();
    const errors = failedCalls + uncounted + rejected + failedScrapes + lost;

    const afterWarmup = median(samples.filter((s) => s.t >= options.warmupSeconds).slice(0, 3));
    const end = median(samples.slice(-3));
    const rssValues = samples.map((s) => s.rssBytes ?? 0);
    return {
      generator,
      seconds: Math.round(seconds),
      measuredMaxPerSecond: measuredMax,
      ratePerSecond: rate,
      sent: succeeded + failedCalls,
      throughputPerSecond: Math.round(succeeded / segments.reduce((sum, s) => sum + s.seconds, 0)),
      errors,
      errorDetails: { failedCalls, uncounted, rejected, failedScrapes, policyStreamsLost: lost },
      scrapes: { count: samples.length, maxMs: Math.round(Math.max(0, ...samples.map((s) => s.scrapeMs))) },
      rss: {
        afterWarmupBytes: afterWarmup,
        endBytes: end,
        maxBytes: rssValues.length > 0 ? Math.max(...rssValues) : undefined,
        growthPercent: afterWarmup && end ? Math.round(((end - afterWarmup) / afterWarmup) * 1000) / 10 : undefined,
        trendMiBPerMinute: trend(samples.filter((s) => s.t >= options.warmupSeconds)),
      },
      segments: segments.map((s) => ({
        seconds: Math.round(s.seconds),
        perSecond: Math.round(s.requestsPerSecond),
        failed: s.failed,
      })),
      samples: samples.map((s) => ({ ...s, scrapeMs: Math.round(s.scrapeMs) })),
    };
  } finally {
    streams.close();
    await agent.stop();
  }
}

/** Accepted reports and rejections, from the agent's own metrics. */
async function counters(agent: AgentProcess): Promise<{ inbound: number; rejected: number }> {
  const { samples } = parseExposition(await agent.metrics());
  let inbound = 0;
  let rejected = 0;
  for (const deployment of ["storefront", "backoffice"]) {
    inbound += samples.get(seriesKey("leakagent_match_inbound", { deployment })) ?? 0;
  }
  for (const [key, value] of samples) if (key.startsWith("leakagent_rejected_total{")) rejected += value;
  return { inbound, rejected };
}

/** Policy streams held open for the whole soak on their own connection; any that ends early is lost. */
function openPolicyStreams(port: number, credentials: readonly string[], count: number) {
  const session: ClientHttp2Session = connectH2(`http://127.0.0.1:${port}`);
  session.on("error", () => {});
  let closing = false;
  let lost = 0;
  const received = Array.from({ length: count }, (_, index) => {
    return new Promise<void>((resolve, reject) => {
      const stream = session.request({
        ":method": "POST",
        ":path": "/leaksignal.Leaksignal/UpdatePolicy",
        "content-type": "application/grpc",
        te: "trailers",
      });
      stream.on("data", () => resolve());
      stream.on("error", () => {});
      stream.on("close", () => {
        if (!closing) lost++;
        reject(new Error("a policy stream ended before its policy arrived"));
      });
      const apiKey = credentials[index % credentials.length] ?? "";
      stream.write(
        grpcFrame(UpdatePolicyRequest.encode({ apiKey, deploymentName: "", commit: "", semver: "" }).finish()),
      );
    });
  });
  return {
    allReceived: Promise.all(received),
    lost: () => lost,
    close: () => {
      closing = true;
      session.destroy();
    },
  };
}

function trend(samples: ReadonlyArray<{ t: number; rssBytes: number | undefined }>): number | undefined {
  const points = samples.filter((s) => s.rssBytes !== undefined).map((s) => [s.t / 60, (s.rssBytes ?? 0) / 2 ** 20]);
  if (points.length < 3) return undefined;
  const meanX = points.reduce((sum, [x]) => sum + (x ?? 0), 0) / points.length;
  const meanY = points.reduce((sum, [, y]) => sum + (y ?? 0), 0) / points.length;
  let covariance = 0;
  let variance = 0;
  for (const [x = 0, y = 0] of points) {
    covariance += (x - meanX) * (y - meanY);
    variance += (x - meanX) ** 2;
  }
  return variance === 0 ? undefined : Math.round((covariance / variance) * 100) / 100;
}

function median(samples: ReadonlyArray<{ rssBytes: number | undefined }>): number | undefined {
  const values = samples
    .map((s) => s.rssBytes)
    .filter((v): v is number => v !== undefined)
    .sort((a, b) => a - b);
  return values[Math.floor(values.length / 2)];
}

function mib(bytes: number | undefined): string {
  return bytes === undefined ? "?" : `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

/** The report as a few lines of text. */
export function soakSummary(report: SoakReport): string {
  return [
    `${report.seconds} s with ${report.generator} at ${report.ratePerSecond}/s${report.measuredMaxPerSecond ? ` (half of the ${report.measuredMaxPerSecond}/s measured)` : ""}`,
    `sent ${report.sent}, throughput ${report.throughputPerSecond}/s, errors ${report.errors} ${JSON.stringify(report.errorDetails)}`,
    `scrapes ${report.scrapes.count} (slowest ${report.scrapes.maxMs} ms)`,
    `agent RSS after warm-up ${mib(report.rss.afterWarmupBytes)}, at the end ${mib(report.rss.endBytes)}, max ${mib(report.rss.maxBytes)}, growth ${report.rss.growthPercent ?? "?"}%, trend ${report.rss.trendMiBPerMinute ?? "?"} MiB/min`,
  ].join("\n");
}
