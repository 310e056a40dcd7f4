import { execFileSync } from "node:child_process";
import { availableParallelism } from "node:os";

/**
 * Which CPU the server under test and the load generator run on. With two or more cores and taskset
 * available they get separate cores, so the load generator does not steal the server's CPU.
 */
export interface CoreLayout {
  readonly pinned: boolean;
  /** The command line that runs `command` on the server's core. */
  server(command: string, args: readonly string[]): [string, string[]];
  /** The command line that runs `command` on the load generator's core. */
  load(command: string, args: readonly string[]): [string, string[]];
}

export function coreLayout(): CoreLayout {
  const pinned = availableParallelism() >= 2 && hasTaskset();
  const on =
    (core: number) =>
    (command: string, args: readonly string[]): [string, string[]] =>
      pinned ? ["taskset", ["-c", String(core), command, ...args]] : [command, [...args]];
  return { pinned, server: on(1), load: on(0) };
}

function hasTaskset(): boolean {
  try {
    execFileSync("taskset", ["-p", String(process.pid)], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** Moves the benchmark process itself to the load generator's core (it drives probes and scrapes). */
export function pinSelf(layout: CoreLayout): void {
  if (layout.pinned) execFileSync("taskset", ["-p", "-c", "0", String(process.pid)], { stdio: "ignore" });
}
