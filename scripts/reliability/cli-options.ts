import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";

/** `--name value` pairs from argv; `--help` prints `usage`. Throws on an unknown flag or a bad number. */
export function readFlags(argv: readonly string[], known: readonly string[], usage: string): Map<string, string> {
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    if (arg === "--help" || arg === "-h") {
      console.log(usage);
      process.exitCode = 0;
      throw new HelpShown();
    }
    const [name, inline] = arg.replace(/^--/, "").split("=", 2) as [string, string | undefined];
    if (!arg.startsWith("--") || !known.includes(name)) throw new Error(`unknown argument ${arg}\n${usage}`);
    const value = inline ?? argv[++i];
    if (value === undefined) throw new Error(`--${name} needs a value`);
    flags.set(name, value);
  }
  return flags;
}

export class HelpShown extends Error {}

export function numberFlag(flags: Map<string, string>, name: string, fallback: number): number {
  const raw = flags.get(name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) throw new Error(`--${name}=${raw} is not a non-negative number`);
  return value;
}

/** Where reports go by default (gitignored). */
export const RESULTS_DIR = resolve(__dirname, "../../reliability-results");

export function writeJson(path: string, value: unknown): string {
  const absolute = resolve(path);
  mkdirSync(dirname(absolute), { recursive: true });
  writeFileSync(absolute, `${JSON.stringify(value, (_key, v) => (typeof v === "bigint" ? String(v) : v), 2)}\n`);
  return absolute;
}
