import { connect } from "node:http2";
import { matchData } from "./grpc-probe";
import { countSeries, scrape } from "./metrics";
import { encodedTransaction, grpcFrame } from "./transaction";

/**
 * Feeds the agent reports from distinct clients (ip and token differ) until its /metrics holds at least
 * `series` samples: each new label set adds the status counter, the five histograms and seven match-count
 * histograms of a checkout transaction (185 series). Returns the series count reached.
 */
export async function populateSeries(port: number, metricsPort: number, series: number): Promise<number> {
  const session = connect(`http://127.0.0.1:${port}`);
  session.on("error", () => {});
  try {
    let reached = countSeries((await scrape(metricsPort, "text")).body);
    let next = 0;
    while (reached < series) {
      // Estimate from the last step how many label sets are still missing, then check.
      const perLabelSet = 185;
      const missing = Math.max(1, Math.ceil((series - reached) / perLabelSet));
      const batch: Promise<string | undefined>[] = [];
      for (let i = 0; i < missing; i++, next++) {
        const body = grpcFrame(encodedTransaction({ ip: clientIp(next), token: `user-${next}` }));
        batch.push(matchData(session, body));
        if (batch.length === 200) await settle(batch.splice(0));
      }
      await settle(batch);
      reached = countSeries((await scrape(metricsPort, "text")).body);
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
