import { createHmac } from "node:crypto";
import type { LabelMode } from "../../ports/telemetry-sink.port";
import type { LabelSet } from "./families";

/** A series the TTL sweep can judge: when it was last updated (ms since the epoch). */
export interface Timed {
  readonly labels: LabelSet;
  touched: number;
}

type Level<S> = Map<string, Level<S> | S>;

/**
 * The live series of one family, found one label value at a time: a report needs no key string built
 * (nested lookups of the values as decoded measured about twice as fast as one lookup of a joined key).
 * Series keep their creation order, the exposition's. Bounded by the caller: check `size` before `add`.
 */
export class SeriesTable<S extends Timed> {
  private readonly root: Level<S> = new Map();
  private readonly ordered = new Set<S>();

  get size(): number {
    return this.ordered.size;
  }

  values(): IterableIterator<S> {
    return this.ordered.values();
  }

  /** The series of these label values (as many as the family has labels), if live. */
  get(values: readonly string[]): S | undefined {
    let level: Level<S> | undefined = this.root;
    const last = values.length - 1;
    for (let i = 0; i < last && level !== undefined; i++)
      level = level.get(values[i] as string) as Level<S> | undefined;
    return level?.get(values[last] as string) as S | undefined;
  }

  /** Adds a series not yet in the table, under its label values. */
  add(series: S): void {
    const values = series.labels.values;
    let level = this.root;
    const last = values.length - 1;
    for (let i = 0; i < last; i++) {
      const value = values[i] as string;
      let next = level.get(value) as Level<S> | undefined;
      if (next === undefined) {
        next = new Map();
        level.set(value, next);
      }
      level = next;
    }
    level.set(values[last] as string, series);
    this.ordered.add(series);
  }

  /** Removes a series, and the levels it leaves empty. */
  delete(series: S): void {
    if (!this.ordered.delete(series)) return;
    const values = series.labels.values;
    const path: Level<S>[] = [this.root];
    for (let i = 0; i < values.length - 1; i++) path.push(path[i]?.get(values[i] as string) as Level<S>);
    for (let i = values.length - 1; i >= 0; i--) {
      const level = path[i] as Level<S>;
      level.delete(values[i] as string);
      if (level.size > 0) break;
    }
  }

  clear(): void {
    this.root.clear();
    this.ordered.clear();
  }
}

/** Distinct values hashed before the cache starts over; bounds its memory whatever the traffic. */
const HASH_CACHE_SIZE = 10_000;

/**
 * A label value as its mode exposes it. `hash`: the first 16 hex digits (64 bits) of HMAC-SHA-256 under the
 * configured key, so the same value gives the same hash on every replica and across restarts, and nobody
 * without the key can test a guess against it. An empty value (nothing sent) stays empty in every mode.
 */
export class LabelRewrite {
  private readonly hashes = new Map<string, string>();

  constructor(
    readonly mode: LabelMode,
    private readonly key: string | undefined,
  ) {
    if (mode === "hash" && !key) throw new Error("hash mode needs a key");
  }

  apply(value: string): string {
    if (this.mode === "raw" || value === "") return value;
    if (this.mode === "drop") return "";
    let hashed = this.hashes.get(value);
    if (hashed === undefined) {
      hashed = createHmac("sha256", this.key as string)
        .update(value)
        .digest("hex")
        .slice(0, 16);
      if (this.hashes.size >= HASH_CACHE_SIZE) this.hashes.clear();
      this.hashes.set(value, hashed);
    }
    return hashed;
  }

  /** Whether this rewrite and another expose every value the same. */
  sameAs(other: LabelRewrite): boolean {
    return this.mode === other.mode && (this.mode !== "hash" || this.key === other.key);
  }
}
