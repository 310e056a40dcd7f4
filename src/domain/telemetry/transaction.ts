/**
 * One MatchData report as the domain reads it: the subset of the wire message that
 * feeds metrics. The generated protobuf type satisfies it structurally; read-only, so a
 * decoder may share one empty list or map among reports.
 * Timestamps are nanoseconds since the Unix epoch; 0 means "not recorded".
 */
export interface ReportedMatch {
  categoryName: string;
}

export interface ReportedHeader {
  name: string;
  value?: string | undefined;
}

/** A collected header of a current-generation proxy; `header` holds the value bytes. */
export interface ReportedHeaderComponent {
  name: string;
  matches: readonly ReportedMatch[];
  header?: Uint8Array | undefined;
  categoryPerformanceUs: { readonly [category: string]: bigint };
}

export interface ReportedComponent {
  timeHeaderStart: bigint;
  timeBodyStart: bigint;
  timeBodyEnd: bigint;
  headerMatches: readonly ReportedHeaderComponent[];
  bodyMatches: readonly ReportedMatch[];
  bodySize: bigint;
  categoryPerformanceUs: { readonly [category: string]: bigint };
}

export interface TransactionReport {
  // 2022-era proxies: the transaction in top-level fields.
  timeRequestStart: bigint;
  timeResponseStart: bigint;
  timeResponseBodyStart: bigint;
  timeResponseBodyEnd: bigint;
  requestHeaders: readonly ReportedHeader[];
  responseHeaders: readonly ReportedHeader[];
  matches: readonly ReportedMatch[];
  bodySize: bigint;
  // Both generations.
  policyPath: string;
  token: string;
  ip: string;
  categoryPerformanceUs: { readonly [category: string]: bigint };
  connectionInfo: { readonly [key: string]: string };
  environment: { readonly [key: string]: string };
  // Current proxies: the transaction as request and response components.
  request?: ReportedComponent | undefined;
  response?: ReportedComponent | undefined;
}

/** The labels every leaksignal_* metric carries (Metrics.md). */
export interface TransactionLabels {
  readonly deployment: string;
  readonly policyPath: string;
  readonly localService: string;
  readonly peerService: string;
  readonly isOutbound: "true" | "false";
  readonly ip: string;
  readonly token: string;
}

/** leaksignal_match_count: one observation per category per context. */
export interface CategoryMatchCount {
  readonly category: string;
  readonly inResponse: boolean;
  readonly inHeader: boolean;
  readonly count: number;
}

/** What one transaction contributes to the metrics. Absent values are not observed. */
export interface TransactionObservation {
  readonly labels: TransactionLabels;
  readonly status: string | undefined;
  readonly matchTimeMs: number | undefined;
  readonly requestTimeMs: number | undefined;
  readonly responseTimeMs: number | undefined;
  readonly requestSizeBytes: number;
  readonly responseSizeBytes: number;
  readonly matchCounts: readonly CategoryMatchCount[];
}

/**
 * The Envoy connection attributes the proxy forwards in `connectionInfo` that identify the peer.
 * listener_direction follows envoy.config.core.v3.TrafficDirection: 1 inbound, 2 outbound.
 */
export const CONNECTION_INFO = {
  listenerDirection: "listener_direction",
  outbound: { peerUriSan: "upstream.uri_san_peer_certificate", peerAddress: "upstream.address" },
  inbound: { peerUriSan: "connection.uri_san_peer_certificate", peerAddress: "source.address" },
} as const;

/** Environment variables naming the workload the proxy runs in, best first. */
export const LOCAL_SERVICE_ENV = ["ISTIO_META_WORKLOAD_NAME", "POD_NAME", "HOSTNAME"] as const;

const UNKNOWN = "unknown";
const SPIFFE_PREFIX = "spiffe://";
const NS_SEGMENT = "/ns/";
const SA_SEGMENT = "/sa/";
/** The pseudo-header that carries the response status, among collected headers and 2022 response headers. */
export const STATUS_HEADER = ":status";
const NS_PER_MS = 1e6;
const NO_MATCHES: readonly CategoryMatchCount[] = Object.freeze([]);

/** Maps one MatchData report of either proxy generation to what it contributes to the metrics. */
export function observeTransaction(deployment: string, report: TransactionReport): TransactionObservation {
  const outbound = report.connectionInfo[CONNECTION_INFO.listenerDirection] === "2";
  const { request, response } = report;
  const current = request !== undefined || response !== undefined;
  return {
    labels: {
      deployment,
      policyPath: report.policyPath,
      localService: localService(report.environment),
      peerService: peerService(report.connectionInfo, outbound),
      isOutbound: outbound ? "true" : "false",
      ip: report.ip,
      token: report.token,
    },
    status: responseStatus(report),
    matchTimeMs: matchTimeMs(report),
    requestTimeMs: current
      ? elapsedMs(request ? request.timeHeaderStart : 0n, componentEnd(request))
      : elapsedMs(report.timeRequestStart, report.timeResponseStart),
    responseTimeMs: current
      ? elapsedMs(componentEnd(request), componentEnd(response))
      : elapsedMs(report.timeResponseStart, report.timeResponseBodyEnd),
    requestSizeBytes: request ? Number(request.bodySize) : 0,
    responseSizeBytes: Number(response ? response.bodySize : report.bodySize),
    matchCounts: matchCounts(report),
  };
}

function localService(environment: { [key: string]: string }): string {
  for (const key of LOCAL_SERVICE_ENV) {
    const value = environment[key];
    if (value) return value;
  }
  return UNKNOWN;
}

function peerService(connectionInfo: { [key: string]: string }, outbound: boolean): string {
  const keys = outbound ? CONNECTION_INFO.outbound : CONNECTION_INFO.inbound;
  const san = connectionInfo[keys.peerUriSan];
  if (san) return peerServiceOfSan(san);
  return connectionInfo[keys.peerAddress] || UNKNOWN;
}

// The same few peers report over and over: remember their service names instead of rebuilding the
// string on every report. Bounded, as SANs come from the proxies.
const SERVICE_OF_SAN = new Map<string, string>();
const MAX_REMEMBERED_SANS = 1024;

function peerServiceOfSan(san: string): string {
  let service = SERVICE_OF_SAN.get(san);
  if (service === undefined) {
    service = spiffeService(san);
    if (SERVICE_OF_SAN.size < MAX_REMEMBERED_SANS) SERVICE_OF_SAN.set(san, service);
  }
  return service;
}

/** `spiffe://<trust-domain>/ns/<ns>/sa/<sa>` → `<trust-domain>/<ns>/<sa>`; any other SAN as is. */
export function spiffeService(san: string): string {
  if (!san.startsWith(SPIFFE_PREFIX)) return san;
  const trustDomainEnd = san.indexOf("/", SPIFFE_PREFIX.length);
  if (trustDomainEnd <= SPIFFE_PREFIX.length || !san.startsWith(NS_SEGMENT, trustDomainEnd)) return san;
  const nsStart = trustDomainEnd + NS_SEGMENT.length;
  const nsEnd = san.indexOf("/", nsStart);
  if (nsEnd <= nsStart || !san.startsWith(SA_SEGMENT, nsEnd)) return san;
  const saStart = nsEnd + SA_SEGMENT.length;
  if (saStart === san.length || san.indexOf("/", saStart) !== -1) return san;
  return `${san.slice(SPIFFE_PREFIX.length, trustDomainEnd)}/${san.slice(nsStart, nsEnd)}/${san.slice(saStart)}`;
}

/** The response's `:status`, from a current proxy's collected headers or a 2022 proxy's header list. */
function responseStatus(report: TransactionReport): string | undefined {
  if (report.response) {
    const headers = report.response.headerMatches;
    for (let i = 0; i < headers.length; i++) {
      const header = headers[i] as ReportedHeaderComponent;
      if (header.name === STATUS_HEADER) return header.header ? statusFromBytes(header.header) : undefined;
    }
  }
  const headers = report.responseHeaders;
  for (let i = 0; i < headers.length; i++) {
    const header = headers[i] as ReportedHeader;
    if (header.name === STATUS_HEADER) return header.value !== undefined ? statusFromText(header.value) : undefined;
  }
  return undefined;
}

// Interned "000".."999" so a status observation allocates no string.
const STATUS_TEXT: string[] = [];

function statusFromBytes(bytes: Uint8Array): string | undefined {
  if (bytes.length !== 3) return undefined;
  const code = digit(bytes[0]) * 100 + digit(bytes[1]) * 10 + digit(bytes[2]);
  if (!(code >= 0)) return undefined;
  let text = STATUS_TEXT[code];
  if (text === undefined) {
    text = String(code).padStart(3, "0");
    STATUS_TEXT[code] = text;
  }
  return text;
}

function statusFromText(value: string): string | undefined {
  if (value.length !== 3) return undefined;
  return digit(value.charCodeAt(0)) + digit(value.charCodeAt(1)) + digit(value.charCodeAt(2)) >= 0 ? value : undefined;
}

/** 0..9 for an ASCII digit, NaN otherwise (NaN poisons any sum it joins). */
function digit(code: number | undefined): number {
  return code !== undefined && code >= 48 && code <= 57 ? code - 48 : Number.NaN;
}

function matchTimeMs(report: TransactionReport): number | undefined {
  let totalUs = addPerformance(NOTHING_REPORTED, report.categoryPerformanceUs);
  totalUs = addComponentPerformance(totalUs, report.request);
  totalUs = addComponentPerformance(totalUs, report.response);
  return totalUs === NOTHING_REPORTED ? undefined : totalUs / 1000;
}

// Reported times are unsigned, so a negative total means "no map had an entry".
const NOTHING_REPORTED = -1;

// Summed as doubles, not bigints: exact below 2^53 µs (285 years of matcher time), and no
// allocation per entry on a path every report takes.
function addComponentPerformance(totalUs: number, component: ReportedComponent | undefined): number {
  if (!component) return totalUs;
  let total = addPerformance(totalUs, component.categoryPerformanceUs);
  const headers = component.headerMatches;
  for (let i = 0; i < headers.length; i++) {
    total = addPerformance(total, (headers[i] as ReportedHeaderComponent).categoryPerformanceUs);
  }
  return total;
}

function addPerformance(totalUs: number, performance: { readonly [category: string]: bigint }): number {
  let total = totalUs;
  for (const category in performance) {
    total = (total === NOTHING_REPORTED ? 0 : total) + Number(performance[category] ?? 0n);
  }
  return total;
}

/** When a component ended: its body end, else its latest recorded timestamp; 0 when unknown. */
function componentEnd(component: ReportedComponent | undefined): bigint {
  if (!component) return 0n;
  if (component.timeBodyEnd !== 0n) return component.timeBodyEnd;
  // bigint, so no Math.max; the body cannot start before the headers, but clocks are the proxy's.
  if (component.timeBodyStart > component.timeHeaderStart) return component.timeBodyStart;
  return component.timeHeaderStart;
}

/** end − start in ms; undefined when either is unrecorded or the clocks run backwards. */
function elapsedMs(start: bigint, end: bigint): number | undefined {
  if (start === 0n || end === 0n || end < start) return undefined;
  return Number(end - start) / NS_PER_MS;
}

type MatchTally = { -readonly [K in keyof CategoryMatchCount]: CategoryMatchCount[K] };

/**
 * Counts per category and context. Each context's entries are contiguous from `contextStart`,
 * so a lookup scans only that context's few categories; nothing is allocated without matches.
 */
function matchCounts(report: TransactionReport): readonly CategoryMatchCount[] {
  const { request, response } = report;
  let counts: MatchTally[] | undefined;
  let contextStart = 0;
  // Indexed loops: this runs for every report, and array iterators are allocations.
  if (request) {
    counts = tally(counts, contextStart, request.bodyMatches, false, false);
    contextStart = counts?.length ?? 0;
    const headers = request.headerMatches;
    for (let i = 0; i < headers.length; i++) {
      counts = tally(counts, contextStart, (headers[i] as ReportedHeaderComponent).matches, false, true);
    }
  }
  contextStart = counts?.length ?? 0;
  if (response) counts = tally(counts, contextStart, response.bodyMatches, true, false);
  // A 2022 proxy only matched response bodies, and reported those matches at the top level.
  counts = tally(counts, contextStart, report.matches, true, false);
  if (response) {
    contextStart = counts?.length ?? 0;
    const headers = response.headerMatches;
    for (let i = 0; i < headers.length; i++) {
      counts = tally(counts, contextStart, (headers[i] as ReportedHeaderComponent).matches, true, true);
    }
  }
  return counts ?? NO_MATCHES;
}

function tally(
  counts: MatchTally[] | undefined,
  contextStart: number,
  matches: readonly ReportedMatch[],
  inResponse: boolean,
  inHeader: boolean,
): MatchTally[] | undefined {
  let tallies = counts;
  for (let m = 0; m < matches.length; m++) {
    const category = (matches[m] as ReportedMatch).categoryName;
    tallies ??= [];
    let entry: MatchTally | undefined;
    for (let i = contextStart; i < tallies.length; i++) {
      const candidate = tallies[i] as MatchTally;
      if (candidate.category === category) {
        entry = candidate;
        break;
      }
    }
    if (entry) entry.count++;
    else tallies.push({ category, inResponse, inHeader, count: 1 });
  }
  return tallies;
}
