import { describe, expect, it } from "vitest";
import { observeTransaction, spiffeService } from "../../src/domain/telemetry/transaction";
import { type Component, type DeepPartial, MatchDataRequest } from "../../src/generated/leaksignal";

/** A report exactly as the ingestion decodes it off the wire. */
function wire(partial: DeepPartial<MatchDataRequest>): MatchDataRequest {
  return MatchDataRequest.decode(MatchDataRequest.encode(MatchDataRequest.fromPartial(partial)).finish());
}

const SECOND = 1_000_000_000n;
const T0 = 1_700_000_000n * SECOND;
const ns = (ms: number) => BigInt(Math.round(ms * 1e6));
const bytes = (text: string) => Buffer.from(text, "latin1");
const matches = (...categories: string[]) => categories.map((categoryName) => ({ categoryName }));

/** A 2022-era proxy: the transaction in top-level fields. */
function report2022(overrides: DeepPartial<MatchDataRequest> = {}): MatchDataRequest {
  return wire({
    policyPath: "/api/orders",
    ip: "10.0.0.7",
    token: "tok-1",
    timeRequestStart: T0,
    timeResponseStart: T0 + ns(12.5),
    timeResponseBodyStart: T0 + ns(13),
    timeResponseBodyEnd: T0 + ns(20.25),
    responseHeaders: [
      { name: "content-type", value: "application/json" },
      { name: ":status", value: "404" },
    ],
    matches: matches("email", "ssn", "email"),
    bodySize: 5120n,
    categoryPerformanceUs: { email: 300n, ssn: 45n },
    ...overrides,
  });
}

function componentsOf(report: MatchDataRequest): { request: Component; response: Component } {
  const { request, response } = report;
  if (!request || !response) throw new Error("the fixture has both components");
  return { request, response };
}

/** A current proxy: the transaction as request and response components. */
function reportCurrent(overrides: DeepPartial<MatchDataRequest> = {}): MatchDataRequest {
  return wire({
    policyPath: "/checkout",
    ip: "10.0.0.9",
    token: "",
    connectionInfo: {
      listener_direction: "2",
      "upstream.uri_san_peer_certificate": "spiffe://cluster.local/ns/shop/sa/payments",
      "upstream.address": "10.1.2.3:8080",
    },
    environment: { ISTIO_META_WORKLOAD_NAME: "checkout-v2", POD_NAME: "checkout-v2-abc", HOSTNAME: "host" },
    request: {
      timeHeaderStart: T0,
      timeBodyStart: T0 + ns(1),
      timeBodyEnd: T0 + ns(3.5),
      bodySize: 700n,
      bodyMatches: matches("credit_card"),
      headerMatches: [
        { name: "authorization", matches: matches("jwt"), categoryPerformanceUs: { jwt: 7n } },
        { name: "cookie", matches: matches("jwt", "email"), categoryPerformanceUs: { jwt: 3n } },
      ],
      categoryPerformanceUs: { credit_card: 120n },
    },
    response: {
      timeHeaderStart: T0 + ns(9),
      timeBodyStart: T0 + ns(10),
      timeBodyEnd: T0 + ns(17.75),
      bodySize: 123_456n,
      bodyMatches: matches("email", "email", "phone", "credit_card"),
      headerMatches: [
        { name: ":status", header: bytes("201"), matches: [], categoryPerformanceUs: {} },
        { name: "set-cookie", matches: matches("email"), categoryPerformanceUs: { email: 2n } },
      ],
      categoryPerformanceUs: { email: 250n, phone: 18n },
    },
    ...overrides,
  });
}

describe("observeTransaction, 2022 proxies", () => {
  it("derives every value from the top-level fields", () => {
    const report = report2022();
    const observation = observeTransaction("prod", report);

    expect(observation.labels).toEqual({
      deployment: "prod",
      policyPath: report.policyPath,
      localService: "unknown",
      peerService: "unknown",
      isOutbound: "false",
      ip: report.ip,
      token: report.token,
    });
    expect(observation.status).toBe("404");
    expect(observation.matchTimeMs).toBe((300 + 45) / 1000);
    expect(observation.requestTimeMs).toBe(Number(report.timeResponseStart - report.timeRequestStart) / 1e6);
    expect(observation.responseTimeMs).toBe(Number(report.timeResponseBodyEnd - report.timeResponseStart) / 1e6);
    expect(observation.requestSizeBytes).toBe(0);
    expect(observation.responseSizeBytes).toBe(Number(report.bodySize));
    expect(observation.matchCounts).toEqual([
      { category: "email", inResponse: true, inHeader: false, count: 2 },
      { category: "ssn", inResponse: true, inHeader: false, count: 1 },
    ]);
  });

  it("leaves out what an idle or empty report does not tell", () => {
    const observation = observeTransaction(
      "prod",
      report2022({ responseHeaders: [], matches: [], categoryPerformanceUs: {}, timeResponseBodyEnd: 0n }),
    );
    expect(observation.status).toBeUndefined();
    expect(observation.matchTimeMs).toBeUndefined();
    expect(observation.responseTimeMs).toBeUndefined();
    expect(observation.requestTimeMs).toBe(12.5);
    expect(observation.matchCounts).toEqual([]);
  });

  it("counts a reported zero matcher time as a 0 ms observation", () => {
    expect(observeTransaction("prod", report2022({ categoryPerformanceUs: { email: 0n } })).matchTimeMs).toBe(0);
  });
});

describe("observeTransaction, current proxies", () => {
  it("derives every value from the request and response components", () => {
    const report = reportCurrent();
    const { request, response } = componentsOf(report);
    const observation = observeTransaction("shop", report);

    expect(observation.labels).toEqual({
      deployment: "shop",
      policyPath: "/checkout",
      localService: "checkout-v2",
      peerService: "cluster.local/shop/payments",
      isOutbound: "true",
      ip: "10.0.0.9",
      token: "",
    });
    expect(observation.status).toBe("201");
    expect(observation.matchTimeMs).toBe((120 + 7 + 3 + 250 + 18 + 2) / 1000);
    expect(observation.requestTimeMs).toBe(Number(request.timeBodyEnd - request.timeHeaderStart) / 1e6);
    expect(observation.responseTimeMs).toBe(Number(response.timeBodyEnd - request.timeBodyEnd) / 1e6);
    expect(observation.requestSizeBytes).toBe(Number(request.bodySize));
    expect(observation.responseSizeBytes).toBe(Number(response.bodySize));
    expect(observation.matchCounts).toEqual([
      { category: "credit_card", inResponse: false, inHeader: false, count: 1 },
      { category: "jwt", inResponse: false, inHeader: true, count: 2 },
      { category: "email", inResponse: false, inHeader: true, count: 1 },
      { category: "email", inResponse: true, inHeader: false, count: 2 },
      { category: "phone", inResponse: true, inHeader: false, count: 1 },
      { category: "credit_card", inResponse: true, inHeader: false, count: 1 },
      { category: "email", inResponse: true, inHeader: true, count: 1 },
    ]);
  });

  it("ends a component at its latest timestamp when the body end is missing", () => {
    const report = reportCurrent();
    const request = { ...componentsOf(report).request, timeBodyEnd: 0n };
    const response = { ...componentsOf(report).response, timeBodyEnd: 0n };
    const observation = observeTransaction("shop", { ...report, request, response });
    expect(observation.requestTimeMs).toBe(Number(request.timeBodyStart - request.timeHeaderStart) / 1e6);
    expect(observation.responseTimeMs).toBe(Number(response.timeBodyStart - request.timeBodyStart) / 1e6);

    const headersOnly = { ...request, timeBodyStart: 0n };
    const headerOnly = observeTransaction("shop", { ...report, request: headersOnly, response });
    expect(headerOnly.requestTimeMs).toBe(0);
    expect(headerOnly.responseTimeMs).toBe(Number(response.timeBodyStart - request.timeHeaderStart) / 1e6);
  });

  it("never observes a time from reversed or missing clocks", () => {
    const report = reportCurrent();
    const reversed = observeTransaction("shop", {
      ...report,
      request: { ...componentsOf(report).request, timeBodyEnd: T0 - ns(5) },
      response: { ...componentsOf(report).response, timeBodyEnd: T0 - ns(10) },
    });
    expect(reversed.requestTimeMs).toBeUndefined();
    expect(reversed.responseTimeMs).toBeUndefined();

    const noStart = observeTransaction("shop", {
      ...report,
      request: { ...componentsOf(report).request, timeHeaderStart: 0n },
    });
    expect(noStart.requestTimeMs).toBeUndefined();
    expect(noStart.responseTimeMs).toBeDefined();

    const noResponse = observeTransaction("shop", { ...report, response: undefined });
    expect(noResponse.responseTimeMs).toBeUndefined();
    expect(noResponse.status).toBeUndefined();
    expect(noResponse.responseSizeBytes).toBe(0);

    const zeroRequest = report2022({ timeRequestStart: 0n });
    expect(observeTransaction("prod", zeroRequest).requestTimeMs).toBeUndefined();
    const reversed2022 = report2022({ timeResponseBodyEnd: T0 });
    expect(observeTransaction("prod", reversed2022).responseTimeMs).toBeUndefined();
  });

  it("keeps nanosecond precision on epoch timestamps", () => {
    const report = reportCurrent();
    const request = { ...componentsOf(report).request, timeHeaderStart: T0 + 1n, timeBodyEnd: T0 + 2n };
    expect(observeTransaction("shop", { ...report, request }).requestTimeMs).toBe(1e-6);
  });
});

describe("observeTransaction, the response status", () => {
  const withStatusBytes = (value: Buffer | undefined) => {
    const report = reportCurrent();
    const headerMatches = [{ name: ":status", header: value, matches: [], categoryPerformanceUs: {} }];
    return observeTransaction("shop", { ...report, response: { ...componentsOf(report).response, headerMatches } })
      .status;
  };
  const withStatusText = (value: string | undefined) =>
    observeTransaction("prod", report2022({ responseHeaders: [{ name: ":status", value }] })).status;

  it("reads three digits from either header form", () => {
    expect(withStatusBytes(bytes("503"))).toBe("503");
    expect(withStatusBytes(bytes("200"))).toBe("200");
    expect(withStatusText("302")).toBe("302");
  });

  it("ignores anything that is not a three-digit status", () => {
    for (const bad of ["20", "2000", "2x0", " 200", "", "-10", "1e2"]) {
      expect(withStatusBytes(bytes(bad)), bad).toBeUndefined();
      expect(withStatusText(bad), bad).toBeUndefined();
    }
    expect(withStatusBytes(undefined)).toBeUndefined();
    expect(withStatusText(undefined)).toBeUndefined();
  });
});

describe("observeTransaction, direction and services", () => {
  const observeWith = (connectionInfo: Record<string, string>, environment: Record<string, string> = {}) =>
    observeTransaction("prod", report2022({ connectionInfo, environment })).labels;

  it("reads the direction from listener_direction", () => {
    expect(observeWith({ listener_direction: "2" }).isOutbound).toBe("true");
    expect(observeWith({ listener_direction: "1" }).isOutbound).toBe("false");
    expect(observeWith({ listener_direction: "0" }).isOutbound).toBe("false");
    expect(observeWith({}).isOutbound).toBe("false");
  });

  it("names an outbound peer by the upstream certificate, else the upstream address", () => {
    const outbound = {
      listener_direction: "2",
      "upstream.uri_san_peer_certificate": "spiffe://cluster.local/ns/default/sa/cartservice",
      "upstream.address": "10.4.0.12:7070",
      "connection.uri_san_peer_certificate": "spiffe://cluster.local/ns/default/sa/frontend",
      "source.address": "10.4.0.99:51234",
    };
    expect(observeWith(outbound).peerService).toBe("cluster.local/default/cartservice");
    expect(observeWith({ ...outbound, "upstream.uri_san_peer_certificate": "" }).peerService).toBe("10.4.0.12:7070");
    expect(observeWith({ listener_direction: "2", "source.address": "10.4.0.99:51234" }).peerService).toBe("unknown");
  });

  it("names an inbound peer by the downstream certificate, else the source address", () => {
    const inbound = {
      listener_direction: "1",
      "connection.uri_san_peer_certificate": "spiffe://example.org/ns/web/sa/frontend",
      "source.address": "10.4.0.99:51234",
      "upstream.uri_san_peer_certificate": "spiffe://cluster.local/ns/default/sa/cartservice",
    };
    expect(observeWith(inbound).peerService).toBe("example.org/web/frontend");
    const { "connection.uri_san_peer_certificate": _, ...withoutSan } = inbound;
    expect(observeWith(withoutSan).peerService).toBe("10.4.0.99:51234");
    expect(observeWith({ "upstream.address": "10.4.0.12:7070" }).peerService).toBe("unknown");
  });

  it("uses a certificate that is not a SPIFFE workload id as is", () => {
    const san = "https://payments.example.com/";
    expect(observeWith({ "connection.uri_san_peer_certificate": san }).peerService).toBe(san);
    for (const other of [
      "spiffe://cluster.local/workload/x",
      "spiffe://cluster.local/ns/default",
      "spiffe://cluster.local/ns/default/sa/",
      "spiffe://cluster.local/ns//sa/cart",
      "spiffe:///ns/default/sa/cart",
      "spiffe://cluster.local/ns/default/sa/cart/extra",
    ]) {
      expect(spiffeService(other), other).toBe(other);
    }
  });

  it("names the local service after the first workload variable set", () => {
    expect(observeWith({}, { ISTIO_META_WORKLOAD_NAME: "reviews-v1", POD_NAME: "p", HOSTNAME: "h" }).localService).toBe(
      "reviews-v1",
    );
    expect(
      observeWith({}, { ISTIO_META_WORKLOAD_NAME: "", POD_NAME: "reviews-v1-7f9", HOSTNAME: "h" }).localService,
    ).toBe("reviews-v1-7f9");
    expect(observeWith({}, { HOSTNAME: "node-3" }).localService).toBe("node-3");
    expect(observeWith({}, { PATH: "/bin" }).localService).toBe("unknown");
  });
});

describe("observeTransaction, match contexts", () => {
  it("keeps header and body matches of request and response apart", () => {
    const report = wire({
      request: {
        headerMatches: [{ name: "x-user", matches: matches("email") }],
        bodyMatches: matches("email", "email", "email"),
      },
      response: {
        headerMatches: [
          { name: "x-a", matches: matches("email") },
          { name: "x-b", matches: matches("email", "phone") },
        ],
        bodyMatches: [],
      },
    });
    expect(observeTransaction("d", report).matchCounts).toEqual([
      { category: "email", inResponse: false, inHeader: false, count: 3 },
      { category: "email", inResponse: false, inHeader: true, count: 1 },
      { category: "email", inResponse: true, inHeader: true, count: 2 },
      { category: "phone", inResponse: true, inHeader: true, count: 1 },
    ]);
  });

  it("sums matcher time over every component when only headers report it", () => {
    const report = wire({
      request: { headerMatches: [{ name: "a", categoryPerformanceUs: { jwt: 1500n } }] },
      response: { headerMatches: [{ name: "b", categoryPerformanceUs: { jwt: 500n, email: 1n } }] },
    });
    expect(observeTransaction("d", report).matchTimeMs).toBe((1500 + 500 + 1) / 1000);
  });
});
