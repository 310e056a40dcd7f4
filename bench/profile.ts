import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { parseArgs } from "node:util";
import { coreLayout, pinSelf } from "./support/cores";
import { runH2load } from "./support/h2load";
import { printTable } from "./support/report";
import { startAgent, startNoopResponder } from "./support/targets";
import { encodedTransaction, grpcFrame } from "./support/transaction";

// Where the agent's time goes under MatchData load (`npx tsx bench/profile.ts [--target noop]`): runs it
// with `node --cpu-prof`, loads it with h2load, and prints the functions with the most self time. The .cpuprofile is kept for a flame
// graph (open it in Chrome DevTools or speedscope).

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
  readonly children?: readonly number[];
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

const ROOT = resolve(__dirname, "..");

/** Self time per function, and per file, in percent of all samples. */
export function summarize(profile: CpuProfile, top = 25): { functions: [string, number][]; files: [string, number][] } {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfTime = new Map<number, number>();
  profile.samples.forEach((id, i) => {
    selfTime.set(id, (selfTime.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  });
  const total = [...selfTime.values()].reduce((a, b) => a + b, 0);
  const functions = new Map<string, number>();
  const files = new Map<string, number>();
  for (const [id, time] of selfTime) {
    const frame = byId.get(id)?.callFrame;
    if (!frame) continue;
    const file = frame.url ? shortUrl(frame.url) : "(native)";
    const name = `${frame.functionName || "(anonymous)"} ${file}:${frame.lineNumber + 1}`;
    functions.set(name, (functions.get(name) ?? 0) + time);
    files.set(file, (files.get(file) ?? 0) + time);
  }
  const ranked = (map: Map<string, number>) =>
    [...map]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, time]): [string, number] => [name, (100 * time) / total]);
  return { functions: ranked(functions), files: ranked(files) };
}

function shortUrl(url: string): string {
  const path = url.replace(/^file:\/\//, "");
  if (path.startsWith(ROOT)) return relative(ROOT, path);
  return path;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { seconds: { type: "string", default: "10" }, target: { type: "string", default: "agent" } },
  });
  const layout = coreLayout();
  pinSelf(layout);
  const dir = mkdtempSync(join(tmpdir(), "leakagent-profile-"));
  const nodeArgs = ["--cpu-prof", `--cpu-prof-dir=${dir}`];
  const start = { agent: () => startAgent(layout, { nodeArgs }), noop: () => startNoopResponder(layout, nodeArgs) }[
    values.target as "agent" | "noop"
  ];
  if (!start) throw new Error(`--target must be agent or noop, not ${values.target}`);
  const agent = await start();
  let load: Awaited<ReturnType<typeof runH2load>>;
  try {
    load = await runH2load(layout, {
      port: agent.port,
      body: grpcFrame(encodedTransaction()),
      clients: 8,
      streams: 32,
      seconds: Number(values.seconds),
      warmUpSeconds: 1,
    });
  } finally {
    await agent.stop();
  }
  const file = readdirSync(dir).find((name) => name.endsWith(".cpuprofile"));
  if (!file) throw new Error(`the agent wrote no profile to ${dir}`);
  const { functions, files } = summarize(JSON.parse(readFileSync(join(dir, file), "utf8")) as CpuProfile);
  console.log(`${Math.round(load.requestsPerSecond)} MatchData/s while profiled; profile: ${join(dir, file)}`);
  printTable(
    "Self time by function",
    functions.map(([name, percent]) => ({ function: name, "%": percent })),
  );
  printTable(
    "Self time by file",
    files.map(([name, percent]) => ({ file: name, "%": percent })),
  );
}

if (require.main === module) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
