/**
 * One MatchData report as the domain reads it: the subset of the wire message that
 * feeds metrics. The generated protobuf type satisfies it structurally.
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
  matches: ReportedMatch[];
  header?: Uint8Array | undefined;
  categoryPerformanceUs: { [category: string]: bigint };
}

export interface ReportedComponent {
  timeHeaderStart: bigint;
  timeBodyStart: bigint;
  timeBodyEnd: bigint;
  headerMatches: ReportedHeaderComponent[];
  bodyMatches: ReportedMatch[];
  bodySize: bigint;
  categoryPerformanceUs: { [category: string]: bigint };
}

export interface TransactionReport {
  // 2022-era proxies: the transaction in top-level fields.
  timeRequestStart: bigint;
  timeResponseStart: bigint;
  timeResponseBodyStart: bigint;
  timeResponseBodyEnd: bigint;
  requestHeaders: ReportedHeader[];
  responseHeaders: ReportedHeader[];
  matches: ReportedMatch[];
  bodySize: bigint;
  // Both generations.
  policyPath: string;
  token: string;
  ip: string;
  categoryPerformanceUs: { [category: string]: bigint };
  connectionInfo: { [key: string]: string };
  environment: { [key: string]: string };
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
