import { getHeapSpaceStatistics } from "node:v8";
import { readMatchData } from "/work/main/src/adapters/ingestion/match-data-reader";
import { observeTransaction } from "/work/main/src/domain/telemetry/transaction";
import { encodedTransaction } from "/work/main/bench/support/transaction";
const bytes = encodedTransaction();
const report = readMatchData(bytes);
const newSpace = () => getHeapSpaceStatistics().find((s) => s.space_name === "new_space")!.space_used_size;
function alloc(name: string, f: () => unknown) {
  for (let i = 0; i < 20000; i++) f();
  const n = 2000; const before = newSpace(); for (let i = 0; i < n; i++) f(); const after = newSpace();
  console.log(name.padEnd(12), ((after - before) / n).toFixed(0), "bytes/op");
}
const unfrozen = { ...report, categoryPerformanceUs: {}, requestHeaders: [], responseHeaders: [], matches: [] };
const r2 = { ...report, request: { ...report.request!, headerMatches: report.request!.headerMatches.map(h => ({...h, categoryPerformanceUs: {...h.categoryPerformanceUs}})) } };
alloc("observe", () => observeTransaction("prod", report));
alloc("unfrozen", () => observeTransaction("prod", unfrozen));
alloc("plainperf", () => observeTransaction("prod", r2));
