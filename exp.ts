import { coreLayout, pinSelf } from "/work/main/bench/support/cores";
import { runH2load } from "/work/main/bench/support/h2load";
import { startAgent, startNoopResponder } from "/work/main/bench/support/targets";
import { encodedTransaction, grpcFrame } from "/work/main/bench/support/transaction";
import { median } from "/work/main/bench/support/report";
(async () => {
  const layout = coreLayout(); pinSelf(layout);
  const body = grpcFrame(encodedTransaction());
  const targets = [
    ["full", await startAgent(layout)],
    ["read-only", await startAgent(layout, { env: { EXP: "read" } })],
    ["grpc-layer", await startAgent(layout, { env: { EXP: "noop" } })],
    ["noop", await startNoopResponder(layout)],
  ] as const;
  const res: Record<string, number[]> = {}; const cpu: Record<string, number[]> = {};
  for (let r = 0; r < Number(process.env.RUNS ?? 5); r++) for (const [name, t] of targets) {
    const x = await runH2load(layout, { port: t.port, body, clients: 8, streams: 32, seconds: 3, warmUpSeconds: 1, serverPid: t.pid }); (cpu[name] ??= []).push(x.serverCpuUsPerRequest!);
    (res[name] ??= []).push(Math.round(x.requestsPerSecond));
  }
  const noop = res.noop!;
  for (const [k, v] of Object.entries(res)) console.log(k.padEnd(12), v.join(" "), "median", median(v), "median ratio to noop", median(v.map((x, i) => x / noop[i]!)).toFixed(2), "cpu us", median(cpu[k]!).toFixed(1));
  for (const [, t] of targets) await t.stop();
})();
