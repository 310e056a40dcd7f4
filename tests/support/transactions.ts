import type { MatchDataRequest } from "../../src/generated/leaksignal";

const MS = 1_000_000n;
const enc = (s: string) => Buffer.from(s, "utf8");

/** A 2022-era proxy's report: the transaction in the top-level fields. */
export function legacyTransaction(overrides: Partial<MatchDataRequest> = {}): MatchDataRequest {
  const start = 1_700_000_000_000n * MS;
  return {
    deploymentName: "legacy",
    policyId: "",
    timeRequestStart: start,
    timeResponseStart: start + 30n * MS,
    timeResponseBodyStart: start + 31n * MS,
    timeResponseBodyEnd: start + 40n * MS,
    requestHeaders: [{ name: ":path", value: "/api/users" }],
    responseHeaders: [{ name: ":status", value: "200" }],
    matches: [
      { categoryName: "email", matcherPath: "users[0].email" },
      { categoryName: "email", matcherPath: "users[1].email" },
      { categoryName: "ssn", matcherPath: "users[0].ssn" },
    ],
    bodySize: 2048n,
    policyPath: "api.example.com/api/users",
    commit: "",
    token: "",
    ip: "10.1.2.3",
    categoryPerformanceUs: { email: 1500n, ssn: 500n },
    connectionInfo: {},
    environment: { HOSTNAME: "users-7d9f" },
    ...overrides,
  };
}

/** A current proxy's report: request and response components, collected headers, connection info. */
export function currentTransaction(overrides: Partial<MatchDataRequest> = {}): MatchDataRequest {
  const start = 1_750_000_000_000n * MS;
  return {
    apiKey: "prod",
    deploymentName: "",
    policyId: "",
    timeRequestStart: 0n,
    timeResponseStart: 0n,
    timeResponseBodyStart: 0n,
    timeResponseBodyEnd: 0n,
    requestHeaders: [],
    responseHeaders: [],
    matches: [],
    bodySize: 0n,
    policyPath: "shop.example.com/cart/checkout",
    commit: "0123abcd",
    token: "user-42",
    ip: "192.168.7.7",
    categoryPerformanceUs: {},
    connectionInfo: {
      listener_direction: "2",
      "upstream.uri_san_peer_certificate": "spiffe://cluster.local/ns/shop/sa/payments",
      "upstream.address": "10.8.0.12:8080",
    },
    environment: { ISTIO_META_WORKLOAD_NAME: "checkout", POD_NAME: "checkout-5c6d", HOSTNAME: "checkout-5c6d" },
    request: {
      timeHeaderStart: start,
      timeBodyStart: start + 1n * MS,
      timeBodyEnd: start + 5n * MS,
      headerMatches: [
        {
          name: ":path",
          timeHeaderStart: start,
          timeHeaderEnd: start,
          matches: [],
          headerSize: 14n,
          header: enc("/cart/checkout"),
          categoryPerformanceUs: {},
        },
        {
          name: "authorization",
          timeHeaderStart: start,
          timeHeaderEnd: start,
          matches: [{ categoryName: "access_token", matcherPath: "" }],
          headerSize: 20n,
          categoryPerformanceUs: { access_token: 100n },
        },
      ],
      bodyMatches: [{ categoryName: "credit_card", matcherPath: "payment.card" }],
      bodySize: 512n,
      categoryPerformanceUs: { credit_card: 400n },
    },
    response: {
      timeHeaderStart: start + 20n * MS,
      timeBodyStart: start + 21n * MS,
      timeBodyEnd: start + 25n * MS,
      headerMatches: [
        {
          name: ":status",
          timeHeaderStart: start,
          timeHeaderEnd: start,
          matches: [],
          headerSize: 3n,
          header: enc("503"),
          categoryPerformanceUs: {},
        },
      ],
      bodyMatches: [
        { categoryName: "email", matcherPath: "order.email" },
        { categoryName: "email", matcherPath: "order.billing.email" },
        { categoryName: "phone_number", matcherPath: "order.phone" },
      ],
      bodySize: 4096n,
      categoryPerformanceUs: { email: 1000n, phone_number: 500n },
    },
    ...overrides,
  };
}
