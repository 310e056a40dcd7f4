import { getHeapSpaceStatistics } from "node:v8";
import { readMatchData } from "/work/main/src/adapters/ingestion/match-data-reader";
import * as tx from "/tmp/rd/tx.ts";
import { MatchDataRequest } from "/work/main/src/generated/leaksignal";
import { encodedTransaction } from "/work/main/bench/support/transaction";
const bytes = encodedTransaction();
const newSpace = () => getHeapSpaceStatistics().find((s) => s.space_name === "new_space")!.space_used_size;
function alloc(name: string, f: () => unknown) {
  for (let i = 0; i < 20000; i++) f();
  const n = 2000; const before = newSpace(); for (let i = 0; i < n; i++) f(); const after = newSpace();
  console.log(name.padEnd(12), ((after - before) / n).toFixed(0), "bytes/op");
}
for (const [name, report] of [["reader", readMatchData(bytes)], ["generated", MatchDataRequest.decode(bytes)]] as const) {
  console.log(name);
  alloc("observe", () => tx.observeTransaction("prod", report as any));
  alloc("matchTime", () => (tx as any).matchTimeMs(report));
  alloc("matchCounts", () => (tx as any).matchCounts(report));
  alloc("status", () => (tx as any).responseStatus(report));
  alloc("local", () => (tx as any).localService(report.environment));
  alloc("peer", () => (tx as any).peerService(report.connectionInfo, true));
}
