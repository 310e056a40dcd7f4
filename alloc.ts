import { getHeapSpaceStatistics } from "node:v8";
import { Registry } from "prom-client";
import { readMatchData } from "/work/main/src/adapters/ingestion/match-data-reader";
import { PrometheusTelemetry } from "/work/main/src/adapters/prometheus/prometheus-telemetry";
import { observeTransaction } from "/work/main/src/domain/telemetry/transaction";
import { MatchDataRequest } from "/work/main/src/generated/leaksignal";
import { encodedTransaction } from "/work/main/bench/support/transaction";
const bytes = encodedTransaction();
const telemetry = new PrometheusTelemetry(new Registry(), "x");
const report = readMatchData(bytes);
const obs = observeTransaction("prod", report);
const newSpace = () => getHeapSpaceStatistics().find((s) => s.space_name === "new_space")!.space_used_size;
function alloc(name: string, f: () => unknown) {
  for (let i = 0; i < 20000; i++) f();
  const n = 2000; const before = newSpace(); for (let i = 0; i < n; i++) f(); const after = newSpace();
  console.log(name.padEnd(12), ((after - before) / n).toFixed(0), "bytes/op", after < before ? "(GC happened, rerun)" : "");
}
for (let k = 0; k < 2; k++) {
alloc("generated", () => MatchDataRequest.decode(bytes));
alloc("read", () => readMatchData(bytes));
alloc("observe", () => observeTransaction("prod", report));
alloc("telemetry", () => telemetry.transactionObserved(obs));
}
