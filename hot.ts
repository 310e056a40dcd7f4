import { readMatchData } from "/work/main/src/adapters/ingestion/match-data-reader";
import { MatchDataRequest } from "/work/main/src/generated/leaksignal";
import { observeTransaction } from "/work/main/src/domain/telemetry/transaction";
import { isDeepStrictEqual } from "node:util";
import { encodedTransaction } from "/work/main/bench/support/transaction";
const bytes = encodedTransaction();
console.log(isDeepStrictEqual(observeTransaction("p", readMatchData(bytes)), observeTransaction("p", MatchDataRequest.decode(bytes))));
function run(name: string, f: () => unknown) {
  const times: number[] = [];
  for (let r = 0; r < 9; r++) { const t = process.hrtime.bigint(); for (let i = 0; i < 50000; i++) f(); times.push(Number(process.hrtime.bigint() - t) / 50000); }
  times.sort((a, b) => a - b); console.log(name.padEnd(12), "min", times[0]!.toFixed(0), "median", times[4]!.toFixed(0), "ns");
}
run("read", () => readMatchData(bytes));
