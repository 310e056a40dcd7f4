import { resolve } from "node:path";
import { readMatchData } from "../src/adapters/ingestion/match-data-reader";
import { MatchDataRequest } from "../src/generated/leaksignal";
import { printTable } from "./support/report";
import { encodedTransaction } from "./support/transaction";

// The MatchData decoder alone, in a loop: `npx tsx bench/decode.ts [built-reader.js ...]` prints ns per report
// of the hot-path reader (match-data-reader.ts), of the generated codec, and of each other build of the reader
// named (e.g. dist/adapters/ingestion/match-data-reader.js of an older checkout), to compare them. Run it
// pinned to one core (taskset -c 1) on a busy machine: it reports the best of five rounds.

type Decode = (bytes: Uint8Array) => unknown;

const ROUNDS = 5;
const CALLS = 300_000;

function nsPerCall(decode: Decode, payload: Uint8Array): number {
  for (let i = 0; i < CALLS / 5; i++) decode(payload); // warm up: let the optimizing compiler in
  let best = Number.POSITIVE_INFINITY;
  for (let round = 0; round < ROUNDS; round++) {
    const started = process.hrtime.bigint();
    for (let i = 0; i < CALLS; i++) decode(payload);
    best = Math.min(best, Number(process.hrtime.bigint() - started) / CALLS);
  }
  return best;
}

function main(): void {
  const payload = encodedTransaction();
  const decoders: [string, Decode][] = [
    ["match-data-reader.ts", readMatchData],
    ["generated codec", (bytes) => MatchDataRequest.decode(bytes)],
    ...process.argv
      .slice(2)
      .map((path): [string, Decode] => [path, (require(resolve(path)) as { readMatchData: Decode }).readMatchData]),
  ];
  printTable(
    `Decoding one ${payload.length}-byte MatchDataRequest (best of ${ROUNDS} x ${CALLS})`,
    decoders.map(([name, decode]) => ({ decoder: name, "ns/report": Math.round(nsPerCall(decode, payload)) })),
  );
}

main();
