import { describe, expect, it } from "vitest";
import { Rng } from "../../scripts/reliability/rng";
import { readMatchData } from "../../src/adapters/ingestion/match-data-reader";
import { claimedDeployment } from "../../src/domain/policy/deployment";
import {
  CONNECTION_INFO,
  LOCAL_SERVICE_ENV,
  observeTransaction,
  type TransactionReport,
} from "../../src/domain/telemetry/transaction";
import { type Component, type HeaderComponent, type Match, MatchDataRequest } from "../../src/generated/leaksignal";
import { currentTransaction, legacyTransaction } from "../support/transactions";

// The hand-written MatchData reader must read every report as the generated codec does, as far as the
// agent looks: the same credentials and the same observation. Checked on fixed reports, on many random
// ones, and on random corruptions of them.

/** Uniform numbers in [0, 1) from a seed, so a failure can be replayed. */
function random(seed: number): () => number {
  const rng = new Rng(seed);
  return () => rng.next();
}

class Generator {
  constructor(readonly next: () => number) {}

  int(below: number): number {
    return Math.floor(this.next() * below);
  }

  chance(probability: number): boolean {
    return this.next() < probability;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T;
  }

  list<T>(max: number, make: () => T): T[] {
    return Array.from({ length: this.int(max + 1) }, make);
  }

  /** ASCII, non-ASCII, empty, long, and the names the agent looks for. */
  text(): string {
    switch (this.int(6)) {
      case 0:
        return "";
      case 1:
        return this.pick(["email", "ssn", "credit_card", ":status", "authorization", ...LOCAL_SERVICE_ENV]);
      case 2:
        return this.pick(["é 🔑", "naïve-ünïcode", "日本語", 'quote"back\\slash\nnewline']);
      case 3:
        return "x".repeat(60 + this.int(40)); // around the reader's interning limit
      default:
        return Math.floor(this.next() * 1e9).toString(36);
    }
  }

  uint64(): bigint {
    switch (this.int(5)) {
      case 0:
        return 0n;
      case 1:
        return BigInt(this.int(1000));
      case 2:
        return 1_750_000_000_000_000_000n + BigInt(this.int(1e9));
      case 3:
        return 2n ** 64n - 1n - BigInt(this.int(10));
      default:
        return BigInt(this.int(2 ** 30)) * BigInt(this.int(2 ** 30));
    }
  }

  status(): string {
    return this.pick(["200", "404", "503", "20", "2000", "abc", ""]);
  }

  performance(): { [category: string]: bigint } {
    return Object.fromEntries(this.list(3, () => [this.text(), this.uint64()]));
  }

  match(): Match {
    return {
      categoryName: this.text(),
      globalStartPosition: this.chance(0.5) ? this.uint64() : undefined,
      globalLength: this.chance(0.5) ? this.uint64() : undefined,
      matcherPath: this.text(),
      matchedValue: this.chance(0.3) ? this.text() : undefined,
    };
  }

  header(): HeaderComponent {
    const name = this.chance(0.3) ? ":status" : this.text();
    return {
      name,
      timeHeaderStart: this.uint64(),
      timeHeaderEnd: this.uint64(),
      matches: this.chance(0.4) ? this.list(3, () => this.match()) : [],
      headerSize: this.uint64(),
      header: this.chance(0.7) ? Buffer.from(name === ":status" ? this.status() : this.text()) : undefined,
      categoryPerformanceUs: this.chance(0.4) ? this.performance() : {},
    };
  }

  component(): Component {
    return {
      timeHeaderStart: this.uint64(),
      timeBodyStart: this.uint64(),
      timeBodyEnd: this.uint64(),
      headerMatches: this.list(6, () => this.header()),
      bodyMatches: this.list(6, () => this.match()),
      bodySize: this.uint64(),
      body: this.chance(0.3) ? Buffer.from(this.text()) : undefined,
      categoryPerformanceUs: this.performance(),
    };
  }

  strings(keys: readonly string[]): { [key: string]: string } {
    return Object.fromEntries(this.list(5, () => [this.chance(0.6) ? this.pick(keys) : this.text(), this.text()]));
  }

  report(): MatchDataRequest {
    return {
      apiKey: this.chance(0.7) ? this.text() : undefined,
      deploymentName: this.text(),
      policyId: this.text(),
      timeRequestStart: this.uint64(),
      timeResponseStart: this.uint64(),
      timeResponseBodyStart: this.uint64(),
      timeResponseBodyEnd: this.uint64(),
      requestHeaders: this.list(3, () => ({ name: this.text(), value: this.chance(0.5) ? this.text() : undefined })),
      responseHeaders: this.list(3, () =>
        this.chance(0.5)
          ? { name: ":status", value: this.chance(0.8) ? this.status() : undefined }
          : { name: this.text(), value: this.text() },
      ),
      matches: this.list(5, () => this.match()),
      bodySize: this.uint64(),
      body: this.chance(0.3) ? Buffer.from(this.text()) : undefined,
      policyPath: this.text(),
      commit: this.text(),
      token: this.text(),
      ip: this.text(),
      categoryPerformanceUs: this.performance(),
      connectionInfo: this.strings([
        CONNECTION_INFO.listenerDirection,
        ...Object.values(CONNECTION_INFO.outbound),
        ...Object.values(CONNECTION_INFO.inbound),
      ]),
      environment: this.strings(LOCAL_SERVICE_ENV),
      request: this.chance(0.6) ? this.component() : undefined,
      response: this.chance(0.6) ? this.component() : undefined,
    };
  }
}

/** What the agent makes of a report: who sent it and what it observes. */
function seenByTheAgent(report: TransactionReport & { apiKey?: string | undefined; deploymentName: string }) {
  return {
    credential: claimedDeployment(report),
    apiKey: report.apiKey,
    deploymentName: report.deploymentName,
    observation: observeTransaction("deployment", report),
  };
}

function expectSameAsGenerated(bytes: Uint8Array): void {
  expect(seenByTheAgent(readMatchData(bytes))).toEqual(seenByTheAgent(MatchDataRequest.decode(bytes)));
}

const encode = (report: MatchDataRequest) => MatchDataRequest.encode(report).finish();

describe("the MatchData reader", () => {
  it("reads the test fixtures of both proxy generations as the generated codec does", () => {
    for (const report of [currentTransaction(), legacyTransaction(), currentTransaction({ apiKey: undefined })]) {
      expectSameAsGenerated(encode(report));
    }
  });

  it("keeps the fields the metrics read", () => {
    const report = currentTransaction();
    const read = readMatchData(encode(report));
    expect(read.apiKey).toBe(report.apiKey);
    expect(read.policyPath).toBe(report.policyPath);
    expect(read.token).toBe(report.token);
    expect(read.ip).toBe(report.ip);
    expect(read.request?.timeBodyEnd).toBe(report.request?.timeBodyEnd);
    expect(read.response?.bodySize).toBe(report.response?.bodySize);
    expect(read.connectionInfo).toEqual(report.connectionInfo);
    expect(read.environment).toEqual(report.environment);
    expect(read.response?.headerMatches.map((header) => header.name)).toEqual([":status"]);
  });

  it("reads 2,000 random reports as the generated codec does", () => {
    const generate = new Generator(random(20_240_601));
    for (let i = 0; i < 2000; i++) expectSameAsGenerated(encode(generate.report()));
  });

  it("reads a report given as a plain Uint8Array, and the same strings twice", () => {
    const bytes = encode(currentTransaction());
    const copy = new Uint8Array(bytes.length + 3).subarray(3);
    copy.set(bytes);
    expectSameAsGenerated(copy);
    expectSameAsGenerated(copy);
  });

  it("skips unknown fields of every wire type and ends a message at a zero tag, as the generated codec", () => {
    const known = encode(currentTransaction());
    // Field 4 is reserved in the schema, so every one of these is unknown; tags of fields 1-15 are one byte.
    const unknown = Buffer.from([
      ...[(4 << 3) | 0, 0x96, 0x01], // varint
      ...[(4 << 3) | 1, 1, 2, 3, 4, 5, 6, 7, 8], // fixed64
      ...[(4 << 3) | 2, 3, 0x61, 0x62, 0x63], // length-delimited
      ...[(4 << 3) | 5, 1, 2, 3, 4], // fixed32
      ...[(4 << 3) | 3, (1 << 3) | 0, 1, (4 << 3) | 4], // a group holding a varint
      ...[(15 << 3) | 0, 7], // policy_path with the wrong wire type: skipped as unknown
    ]);
    expectSameAsGenerated(Buffer.concat([unknown, known, unknown]));
    expectSameAsGenerated(Buffer.concat([known, Buffer.from([0]), encode({ ...currentTransaction(), ip: "later" })]));
  });

  it("throws on truncated reports, and never reads a corrupted one differently from the generated codec", () => {
    const generate = new Generator(random(7));
    expect(() => readMatchData(encode(currentTransaction()).subarray(0, 50))).toThrow();
    let decodedByBoth = 0;
    for (let i = 0; i < 3000; i++) {
      const bytes = Buffer.from(encode(i % 2 === 0 ? currentTransaction() : generate.report()));
      for (let flips = 1 + generate.int(3); flips > 0; flips--) {
        bytes[generate.int(bytes.length)] = generate.int(256);
      }
      const corrupted = generate.chance(0.2) ? bytes.subarray(0, generate.int(bytes.length)) : bytes;
      let generated: MatchDataRequest;
      try {
        generated = MatchDataRequest.decode(corrupted);
      } catch {
        continue; // the reader may read more leniently what it skips anyway
      }
      expect(seenByTheAgent(readMatchData(corrupted))).toEqual(seenByTheAgent(generated));
      decodedByBoth++;
    }
    expect(decodedByBoth).toBeGreaterThan(500);
  });
});
