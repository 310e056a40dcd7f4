import { connect } from "node:http2";
import { matchData } from "./grpc-probe";
import { scrape, sumSamples } from "./metrics";
import { encodedTransaction, grpcFrame } from "./transaction";

/** Endpoints the populated clients call, so policy_path varies as ip and token do. */
const POLICY_PATHS = [
  "shop.example.com/cart/checkout",
  "shop.example.com/cart",
  "shop.example.com/account/profile",
  "shop.example.com/account/orders",
  "shop.example.com/search",
  "api.example.com/v1/payments",
  "api.example.com/v1/customers",
  "api.example.com/v1/invoices",
];

/** Each label set of a checkout report adds the status counter, five histograms and seven match counts. */
const SERIES_PER_LABEL_SET = 185;

/**
 * Feeds the agent reports from distinct clients (ip and token differ, over a few endpoints) until its
 * /metrics holds at least `series` samples, every one a live series of the agent's own label sets.
 * Returns the series count reached. Fails if the agent drops series (its per-metric cap) or stops growing.
 */
export async function populateSeries(port: number, metricsPort: number, series: number): Promise<number> {
  const session = connect(`http://127.0.0.1:${port}`);
  session.on("error", () => {});
  try {
    let reached = (await scrape(metricsPort, "text")).series;
    let next = 0;
    while (reached < series) {
      const missing = Math.max(1, Math.ceil((series - reached) / SERIES_PER_LABEL_SET));
      const batch: Promise<string | undefined>[] = [];
      for (let i = 0; i < missing; i++, next++) {
        const variant = {
          ip: clientIp(next),
          token: `user-${next}`,
          policyPath: POLICY_PATHS[next % POLICY_PATHS.length] as string,
        };
        batch.push(matchData(session, grpcFrame(encodedTransaction(variant))));
        if (batch.length === 200) await settle(batch.splice(0));
      }
      await settle(batch);
      const scraped = await scrape(metricsPort, "text");
      const dropped = sumSamples(scraped.body, "leakagent_series_dropped_total");
      if (dropped > 0 || scraped.series <= reached) {
        throw new Error(
          `the agent holds ${scraped.series} series and dropped ${dropped} updates on the way to ${series}: ` +
            "raise metrics.max_series_per_metric in the benchmark config",
        );
      }
      reached = scraped.series;
    }
    return reached;
  } finally {
    session.close();
  }
}

async function settle(calls: Promise<string | undefined>[]): Promise<void> {
  const failures = (await Promise.all(calls)).filter((failure) => failure !== undefined);
  if (failures.length > 0) throw new Error(`populating series failed: ${failures[0]}`);
}

function clientIp(n: number): string {
  return `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;
}
