import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { arch, cpus, release, totalmem } from "node:os";
import { join, resolve } from "node:path";

/** Where `npm run bench` writes its JSON (gitignored). */
export const DEFAULT_RESULTS_DIR = resolve(__dirname, "../results");

export interface MachineDetails {
  readonly cpu: string;
  readonly cores: number;
  readonly memoryGiB: number;
  readonly kernel: string;
  readonly arch: string;
  readonly node: string;
  readonly h2load: string | undefined;
  /** Whether server and load generator ran on separate cores. */
  readonly pinned: boolean;
  /** When the benchmark finished (ISO 8601). */
  readonly measuredAt: string;
}

export function machineDetails(pinned: boolean): MachineDetails {
  return {
    cpu: cpus()[0]?.model ?? "unknown",
    cores: cpus().length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: release(),
    arch: arch(),
    node: process.versions.node,
    h2load: h2loadVersion(),
    pinned,
    measuredAt: new Date().toISOString(),
  };
}

function h2loadVersion(): string | undefined {
  try {
    return execFileSync("h2load", ["--version"], { encoding: "utf8" }).trim();
  } catch {
    return undefined;
  }
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

/**
 * The median over runs of a[i] / b[i]: each ratio compares two measurements taken one after the other in the
 * same run, so drift of a shared machine moves both.
 */
export function medianRatio(a: readonly number[], b: readonly number[]): number {
  return median(a.map((value, i) => value / (b[i] ?? Number.NaN)));
}

/** The value at quantile q (0..1) of already sorted values, nearest rank. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] as number;
}

export type Cell = string | number | boolean | undefined;

/** Prints rows as an aligned table under a title. */
export function printTable(title: string, rows: readonly Record<string, Cell>[]): void {
  const columns = [...new Set(rows.flatMap((row) => Object.keys(row)))];
  const text = (cell: Cell) => (typeof cell === "number" ? formatNumber(cell) : cell === undefined ? "" : String(cell));
  const widths = columns.map((column) => Math.max(column.length, ...rows.map((row) => text(row[column]).length)));
  const line = (cells: string[]) => cells.map((cell, i) => cell.padStart(widths[i] ?? 0)).join("  ");
  console.log(`\n${title}`);
  console.log(line(columns));
  console.log(line(widths.map((width) => "-".repeat(width))));
  for (const row of rows) console.log(line(columns.map((column) => text(row[column]))));
}

function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (Number.isInteger(value)) return String(value);
  return Math.abs(value) >= 100 ? value.toFixed(0) : Math.abs(value) >= 1 ? value.toFixed(2) : value.toPrecision(3);
}

/** Writes one benchmark's results as `<dir>/<name>.json`; returns the path. */
export function writeResults(dir: string, name: string, results: object): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${name}.json`);
  writeFileSync(path, `${JSON.stringify(results, null, 2)}\n`);
  return path;
}
