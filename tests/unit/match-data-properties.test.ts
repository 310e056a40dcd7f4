import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { readMatchData } from "../../src/adapters/ingestion/match-data-reader";
import {
  CONNECTION_INFO,
  LOCAL_SERVICE_ENV,
  observeTransaction,
  type TransactionObservation,
  type TransactionReport,
} from "../../src/domain/telemetry/transaction";
import {
  Component,
  type Header,
  type HeaderComponent,
  type Match,
  MatchDataRequest,
} from "../../src/generated/leaksignal";

// Property tests of the MatchData path from wire bytes to what the metrics observe: the hand-written
// reader (match-data-reader.ts) against the generated codec, and observeTransaction on whatever comes out.
// fast-check prints the seed and the shrunk input of any failure; FC_SEED replays it.
const SETTINGS = { numRuns: 300, seed: process.env.FC_SEED ? Number(process.env.FC_SEED) : undefined };

const MAX_UINT64 = 2n ** 64n - 1n;
const CONNECTION_INFO_KEYS: readonly string[] = [
  CONNECTION_INFO.listenerDirection,
  ...Object.values(CONNECTION_INFO.outbound),
  ...Object.values(CONNECTION_INFO.inbound),
];
const ENVIRONMENT_KEYS: readonly string[] = LOCAL_SERVICE_ENV;

// ---- Arbitraries -------------------------------------------------------------------------------------

/** Strings the agent looks for, strings that are hard to get right, anything, and very long ones. */
const text = fc.oneof(
  fc.constantFrom(
    "",
    "email",
    "ssn",
    ":status",
    "\uFEFF",
    "\uFEFFbom-first",
    "é 🔑",
    "日本語",
    "\u0000nul",
    "\uD800",
    "__proto__",
    "constructor",
    "toString",
    ...LOCAL_SERVICE_ENV,
    ...CONNECTION_INFO_KEYS,
  ),
  fc.string({ unit: "binary", maxLength: 24 }),
  // Around and far past the reader's interning limit (64), ASCII or not.
  fc
    .tuple(fc.integer({ min: 60, max: 5_000 }), fc.constantFrom("a", "é", "\uFEFF"))
    .map(([length, unit]) => unit.repeat(length)),
);

/** Zero ("not recorded"), small, near 2^64-1, real nanosecond timestamps, anything. */
const uint64 = fc.oneof(
  fc.constantFrom(0n, 1n, MAX_UINT64, MAX_UINT64 - 1n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 63n),
  fc.bigInt({ min: 0n, max: 1000n }),
  fc.bigInt({ min: 1_750_000_000_000_000_000n, max: 1_750_000_001_000_000_000n }),
  fc.bigInt({ min: 0n, max: MAX_UINT64 }),
);

const statusText = fc.oneof(fc.constantFrom("200", "404", "000", "999", "20", "2000", "2O0", " 20", ""), text);

/** Header value bytes: statuses, invalid UTF-8, anything. */
const headerBytes = fc.oneof(
  statusText.map((status) => Buffer.from(status, "latin1")),
  fc.constantFrom(Buffer.from([0xff, 0xfe, 0xfd]), Buffer.from([0x32, 0xc3, 0x30]), Buffer.from([0x32, 0x30, 0x80])),
  fc.uint8Array({ maxLength: 12 }).map((bytes) => Buffer.from(bytes)),
);

const optional = <T>(arbitrary: fc.Arbitrary<T>) => fc.option(arbitrary, { nil: undefined });
const performance = fc.dictionary(text, uint64, { maxKeys: 3 });
const stringMap = (keys: readonly string[]) =>
  fc.dictionary(fc.oneof(fc.constantFrom(...keys), text), fc.oneof(fc.constantFrom("1", "2", "", "spiffe://"), text), {
    maxKeys: 5,
  });

const matchOf = (category: fc.Arbitrary<string>): fc.Arbitrary<Match> =>
  fc.record({
    categoryName: category,
    globalStartPosition: optional(uint64),
    globalLength: optional(uint64),
    matcherPath: text,
    matchedValue: optional(text),
  });
const match = matchOf(text);

const headerComponent: fc.Arbitrary<HeaderComponent> = fc.record({
  name: fc.oneof(fc.constant(":status"), text),
  timeHeaderStart: uint64,
  timeHeaderEnd: uint64,
  matches: fc.array(match, { maxLength: 3 }),
  headerSize: uint64,
  header: optional(headerBytes),
  categoryPerformanceUs: performance,
});

const component: fc.Arbitrary<Component> = fc.record({
  timeHeaderStart: uint64,
  timeBodyStart: uint64,
  timeBodyEnd: uint64,
  headerMatches: fc.array(headerComponent, { maxLength: 4 }),
  bodyMatches: fc.array(match, { maxLength: 4 }),
  bodySize: uint64,
  body: optional(fc.uint8Array({ maxLength: 32 }).map((bytes) => Buffer.from(bytes))),
  categoryPerformanceUs: performance,
});

const header: fc.Arbitrary<Header> = fc.record({
  name: fc.oneof(fc.constant(":status"), text),
  value: optional(statusText),
});

const report: fc.Arbitrary<MatchDataRequest> = fc.record({
  apiKey: optional(text),
  deploymentName: text,
  policyId: text,
  timeRequestStart: uint64,
  timeResponseStart: uint64,
  timeResponseBodyStart: uint64,
  timeResponseBodyEnd: uint64,
  requestHeaders: fc.array(header, { maxLength: 3 }),
  responseHeaders: fc.array(header, { maxLength: 3 }),
  matches: fc.array(match, { maxLength: 5 }),
  bodySize: uint64,
  body: optional(fc.uint8Array({ maxLength: 32 }).map((bytes) => Buffer.from(bytes))),
  policyPath: text,
  commit: text,
  token: text,
  ip: text,
  categoryPerformanceUs: performance,
  connectionInfo: stringMap(CONNECTION_INFO_KEYS),
  environment: stringMap(ENVIRONMENT_KEYS),
  request: optional(component),
  response: optional(component),
});

// Raw fields the generated encoder cannot write: unknown field numbers of every wire type, known fields
// with the wrong wire type, and string fields holding invalid UTF-8. Appended after a message, they are
// merged into it as the protobuf encoding says (the last value of a scalar wins, lists and maps grow).
const invalidUtf8 = fc.oneof(
  fc.constantFrom(Buffer.from([0xff]), Buffer.from([0xc3]), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from([0xef, 0xbb])),
  fc.uint8Array({ maxLength: 16 }).map((bytes) => Buffer.from(bytes)),
);
const STRING_FIELDS = [1, 2, 15, 17, 18] as const;
const rawField = fc.oneof(
  fc.record({ kind: fc.constant("unknown" as const), field: fc.constantFrom(4, 9, 24, 1000, 536_870_911) }),
  fc.record({ kind: fc.constant("wrong wire type" as const), field: fc.constantFrom(1, 5, 11, 12, 13, 15, 19, 22) }),
  fc.record({
    kind: fc.constant("invalid utf-8" as const),
    field: fc.constantFrom(...STRING_FIELDS),
    bytes: invalidUtf8,
  }),
  fc.record({ kind: fc.constant("invalid utf-8 category" as const), bytes: invalidUtf8 }),
  fc.record({
    kind: fc.constant("invalid utf-8 map entry" as const),
    field: fc.constantFrom(19, 20, 21),
    key: fc.oneof(
      fc.constantFrom(...ENVIRONMENT_KEYS, ...CONNECTION_INFO_KEYS).map((k) => Buffer.from(k)),
      invalidUtf8,
    ),
    value: invalidUtf8,
  }),
);

type RawField = typeof rawField extends fc.Arbitrary<infer T> ? T : never;

function encodeRaw(fields: readonly RawField[]): Buffer {
  const writer = new BinaryWriter();
  for (const raw of fields) {
    switch (raw.kind) {
      case "unknown":
        // One of each wire type, the group holding a varint.
        writer.tag(raw.field, WireType.Varint).uint64(MAX_UINT64);
        writer.tag(raw.field, WireType.Bit64).fixed64(7n);
        writer.tag(raw.field, WireType.LengthDelimited).bytes(Buffer.from("unknown"));
        writer.tag(raw.field, WireType.Bit32).fixed32(7);
        writer.tag(raw.field, WireType.StartGroup).tag(1, WireType.Varint).uint32(1);
        writer.tag(raw.field, WireType.EndGroup);
        break;
      case "wrong wire type":
        // Varint fields as length-delimited, the others as varints.
        if (raw.field === 5 || raw.field === 13)
          writer.tag(raw.field, WireType.LengthDelimited).bytes(Buffer.from("x"));
        else writer.tag(raw.field, WireType.Varint).uint32(3);
        break;
      case "invalid utf-8":
        writer.tag(raw.field, WireType.LengthDelimited).bytes(raw.bytes);
        break;
      case "invalid utf-8 category": {
        const match = new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(raw.bytes).finish();
        writer.tag(12, WireType.LengthDelimited).bytes(match);
        break;
      }
      case "invalid utf-8 map entry": {
        const entry = new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(raw.key);
        if (raw.field === 19) entry.tag(2, WireType.Varint).uint64(42n);
        else entry.tag(2, WireType.LengthDelimited).bytes(raw.value);
        writer.tag(raw.field, WireType.LengthDelimited).bytes(entry.finish());
        break;
      }
    }
  }
  return Buffer.from(writer.finish());
}

const encode = (message: MatchDataRequest) => Buffer.from(MatchDataRequest.encode(message).finish());

// ---- What the reader exposes, and what observeTransaction promises -------------------------------------

const pick = (map: { readonly [key: string]: string }, keys: readonly string[]) =>
  Object.fromEntries(keys.filter((key) => Object.hasOwn(map, key)).map((key) => [key, map[key]]));
const categories = (matches: readonly { categoryName: string }[]) => matches.map((m) => m.categoryName);
const hex = (bytes: Uint8Array | undefined) => (bytes === undefined ? undefined : Buffer.from(bytes).toString("hex"));

/** A collected header the metrics read: the status, or one with matches or timings (the reader drops the rest). */
function carriesSomething(header: {
  name: string;
  matches: readonly unknown[];
  categoryPerformanceUs: object;
}): boolean {
  return header.name === ":status" || header.matches.length > 0 || Object.keys(header.categoryPerformanceUs).length > 0;
}

function componentView(component: TransactionReport["request"]) {
  if (component === undefined) return undefined;
  return {
    timeHeaderStart: component.timeHeaderStart,
    timeBodyStart: component.timeBodyStart,
    timeBodyEnd: component.timeBodyEnd,
    bodySize: component.bodySize,
    bodyMatches: categories(component.bodyMatches),
    categoryPerformanceUs: { ...component.categoryPerformanceUs },
    headerMatches: component.headerMatches.filter(carriesSomething).map((h) => ({
      name: h.name,
      matches: categories(h.matches),
      header: hex(h.header),
      categoryPerformanceUs: { ...h.categoryPerformanceUs },
    })),
  };
}

/** Every field the reader exposes, as the metrics and the deployment lookup read it. */
function readerView(report: TransactionReport & { apiKey?: string | undefined; deploymentName: string }) {
  return {
    apiKey: report.apiKey,
    deploymentName: report.deploymentName,
    timeRequestStart: report.timeRequestStart,
    timeResponseStart: report.timeResponseStart,
    timeResponseBodyStart: report.timeResponseBodyStart,
    timeResponseBodyEnd: report.timeResponseBodyEnd,
    responseHeaders: report.responseHeaders.filter((h) => h.name === ":status").map((h) => ({ ...h })),
    matches: categories(report.matches),
    bodySize: report.bodySize,
    policyPath: report.policyPath,
    token: report.token,
    ip: report.ip,
    categoryPerformanceUs: { ...report.categoryPerformanceUs },
    connectionInfo: pick(report.connectionInfo, CONNECTION_INFO_KEYS),
    environment: pick(report.environment, ENVIRONMENT_KEYS),
    request: componentView(report.request),
    response: componentView(report.response),
  };
}

const isTime = (value: number | undefined) => value === undefined || (Number.isFinite(value) && value >= 0);

/**
 * What transaction.ts promises about the observation of a report. `report` is the oracle: the report as the
 * generated codec decodes it when it does, else as the reader reads it.
 */
function expectObservationKeepsPromises(observation: TransactionObservation, report: TransactionReport): void {
  const { labels } = observation;
  for (const value of Object.values(labels)) expect(typeof value).toBe("string");
  expect(["true", "false"]).toContain(labels.isOutbound);
  expect(labels).toMatchObject({ policyPath: report.policyPath, ip: report.ip, token: report.token });

  // A status is observed only as exactly three digits (docs/metrics.md).
  if (observation.status !== undefined) expect(observation.status).toMatch(/^[0-9]{3}$/);

  // Times: absent (not observed) or a finite, non-negative number of milliseconds.
  for (const time of [observation.matchTimeMs, observation.requestTimeMs, observation.responseTimeMs]) {
    expect(isTime(time)).toBe(true);
  }
  const { request, response } = report;
  const performanceMaps = [report.categoryPerformanceUs];
  for (const c of [request, response]) {
    if (c) performanceMaps.push(c.categoryPerformanceUs, ...c.headerMatches.map((h) => h.categoryPerformanceUs));
  }
  // Match time is absent exactly when no map had an entry.
  expect(observation.matchTimeMs === undefined).toBe(performanceMaps.every((map) => Object.keys(map).length === 0));
  const allTimestamps = [
    report.timeRequestStart,
    report.timeResponseStart,
    report.timeResponseBodyEnd,
    ...[request, response].flatMap((c) => (c ? [c.timeHeaderStart, c.timeBodyStart, c.timeBodyEnd] : [])),
  ];
  if (allTimestamps.every((t) => t === 0n)) {
    // 0 means "not recorded": nothing recorded, no time observed.
    expect([observation.requestTimeMs, observation.responseTimeMs]).toEqual([undefined, undefined]);
  }
  if (request === undefined && response === undefined) {
    // A 2022 proxy: an elapsed time is absent exactly when either end is unrecorded or the clock ran backwards.
    const absent = (start: bigint, end: bigint) => start === 0n || end === 0n || end < start;
    expect(observation.requestTimeMs === undefined).toBe(absent(report.timeRequestStart, report.timeResponseStart));
    expect(observation.responseTimeMs === undefined).toBe(absent(report.timeResponseStart, report.timeResponseBodyEnd));
  }

  // Sizes are always observed: finite, non-negative, whole.
  for (const size of [observation.requestSizeBytes, observation.responseSizeBytes]) {
    expect(Number.isInteger(size) && size >= 0).toBe(true);
  }

  // Match counts: one entry per category and context, counting exactly the matches of that context.
  const contexts: [inResponse: boolean, inHeader: boolean, matches: readonly { categoryName: string }[]][] = [
    [false, false, request?.bodyMatches ?? []],
    [false, true, request?.headerMatches.flatMap((h) => h.matches) ?? []],
    [true, false, [...(response?.bodyMatches ?? []), ...report.matches]],
    [true, true, response?.headerMatches.flatMap((h) => h.matches) ?? []],
  ];
  const seen = new Set<string>();
  for (const count of observation.matchCounts) {
    const key = JSON.stringify([count.category, count.inResponse, count.inHeader]);
    expect(seen.has(key)).toBe(false);
    seen.add(key);
    expect(typeof count.category).toBe("string");
    expect(Number.isInteger(count.count) && count.count > 0).toBe(true);
  }
  for (const [inResponse, inHeader, matches] of contexts) {
    const expected = new Map<string, number>();
    for (const m of matches) expected.set(m.categoryName, (expected.get(m.categoryName) ?? 0) + 1);
    const observed = observation.matchCounts.filter((c) => c.inResponse === inResponse && c.inHeader === inHeader);
    expect(new Map(observed.map((c) => [c.category, c.count]))).toEqual(expected);
  }
}

/** Reads `bytes` both ways: the reader must agree with the generated codec on all it exposes, and what the agent observes keeps its promises. */
function expectReadAsGenerated(bytes: Uint8Array): void {
  const decoded = MatchDataRequest.decode(bytes);
  const read = readMatchData(bytes);
  expect(readerView(read)).toEqual(readerView(decoded));
  const observation = observeTransaction("deployment", read);
  expect(observation).toEqual(observeTransaction("deployment", decoded));
  expectObservationKeepsPromises(observation, decoded);
}

// What readMatchData throws on input it cannot read; the service answers any of them with INVALID_ARGUMENT
// (GrpcCall.decode). Anything else (a TypeError, a stack overflow) would be a bug in the reader.
const READER_ERRORS =
  /^(premature end of message|invalid varint|maximum recursion depth reached|illegal tag \d+|cannot skip wire type \d+)$/;

/** Any bytes: the reader reads them (as the generated codec does, if it can) or throws one of its errors. */
function expectReadOrReaderError(bytes: Uint8Array): "read" | "refused" {
  let generated: MatchDataRequest | undefined;
  try {
    generated = MatchDataRequest.decode(bytes);
  } catch {
    generated = undefined;
  }
  let read: ReturnType<typeof readMatchData>;
  try {
    read = readMatchData(bytes);
  } catch (error) {
    if (!(error instanceof Error && READER_ERRORS.test(error.message))) throw error;
    // Never stricter than the generated codec: what it reads, the reader reads.
    expect(generated).toBeUndefined();
    return "refused";
  }
  // It may be more lenient in what it skips: then only its own report is there to check against.
  if (generated) expect(readerView(read)).toEqual(readerView(generated));
  expectObservationKeepsPromises(observeTransaction("deployment", read), generated ?? read);
  return "read";
}

const withRawFields = fc.record({
  report,
  before: fc.array(rawField, { maxLength: 3 }),
  after: fc.array(rawField, { maxLength: 4 }),
});

describe("the MatchData reader against the generated codec, on any report", () => {
  it("reads every field it exposes as the generated decoder does, with unknown fields and invalid UTF-8 mixed in", () => {
    fc.assert(
      fc.property(withRawFields, ({ report, before, after }) => {
        expectReadAsGenerated(Buffer.concat([encodeRaw(before), encode(report), encodeRaw(after)]));
      }),
      SETTINGS,
    );
  });

  it("reads reports with thousands of matches, counting every one in its context", () => {
    const category = fc.constantFrom("email", "ssn", "credit_card", "", "\uFEFF", "é");
    const many = fc.array(matchOf(category), { minLength: 500, maxLength: 2000 });
    const crowded = fc.record({
      report,
      matches: many,
      requestBody: many,
      responseBody: many,
      headers: fc.array(fc.array(matchOf(category), { maxLength: 400 }), { maxLength: 6 }),
    });
    fc.assert(
      fc.property(crowded, ({ report, matches, requestBody, responseBody, headers }) => {
        const headerComponents = headers.map((headerMatches, i) => ({
          name: i === 0 ? ":status" : `x-${i}`,
          timeHeaderStart: 0n,
          timeHeaderEnd: 0n,
          matches: headerMatches,
          headerSize: 0n,
          header: Buffer.from("200"),
          categoryPerformanceUs: {},
        }));
        const base = report.request ?? Component.fromPartial({});
        expectReadAsGenerated(
          encode({
            ...report,
            matches,
            request: { ...base, bodyMatches: requestBody, headerMatches: headerComponents },
            response: { ...base, bodyMatches: responseBody, headerMatches: headerComponents },
          }),
        );
      }),
      { ...SETTINGS, numRuns: 10 },
    );
  });
});

describe("the MatchData reader's string table", () => {
  it("hands out each string as itself when strings share a slot (same length, first, middle and last byte)", () => {
    // Strings that differ only away from the three bytes the table's slot is chosen by, in any order and
    // repeated, so that each one finds the slot holding another, or itself.
    const alike = fc.integer({ min: 3, max: 64 }).chain((length) =>
      fc.array(
        fc.array(fc.constantFrom<string>("a", "b", "é"), { minLength: length, maxLength: length }).map((chars) => {
          chars[0] = "x";
          chars[length >> 1] = "y";
          chars[length - 1] = "z";
          return chars.join("");
        }),
        { minLength: 2, maxLength: 40 },
      ),
    );
    fc.assert(
      fc.property(alike, (names) => {
        const matches = [...names, ...names].map((categoryName) => ({ categoryName, matcherPath: "" }));
        const read = readMatchData(encode(MatchDataRequest.fromPartial({ matches })));
        expect(read.matches.map((match) => match.categoryName)).toEqual(matches.map((match) => match.categoryName));
      }),
      SETTINGS,
    );
  });
});

describe("the MatchData reader on bytes that are not a report", () => {
  it("reads random bytes or refuses them with its own error, never anything else", () => {
    const outcomes = { read: 0, refused: 0 };
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        outcomes[expectReadOrReaderError(bytes)]++;
      }),
      { ...SETTINGS, numRuns: 2000 },
    );
    // Both outcomes happen, or the property says little.
    expect(Math.min(outcomes.read, outcomes.refused)).toBeGreaterThan(50);
  });

  it("reads corrupted and truncated reports or refuses them with its own error", () => {
    const corrupted = fc
      .record({
        report,
        flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
        cut: fc.option(fc.nat(), { nil: undefined }),
      })
      .map(({ report, flips, cut }) => {
        const bytes = encode(report);
        if (bytes.length === 0) return bytes;
        for (const [at, value] of flips) bytes[at % bytes.length] = value;
        return cut === undefined ? bytes : bytes.subarray(0, cut % bytes.length);
      });
    fc.assert(
      fc.property(corrupted, (bytes) => void expectReadOrReaderError(bytes)),
      SETTINGS,
    );
  });
});
