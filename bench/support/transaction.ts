import { MatchDataRequest } from "../../src/generated/leaksignal";

/** The report in a gRPC length-prefixed frame, as the body of one MatchData call. */
export { grpcFrame } from "../../scripts/reliability/wire";

const MS = 1_000_000n;
const bytes = (text: string) => Buffer.from(text, "utf8");

/** What varies between reports: the labels that make series. */
export interface TransactionVariant {
  readonly apiKey?: string;
  readonly ip?: string;
  readonly token?: string;
  readonly policyPath?: string;
  readonly status?: string;
}

/**
 * A current-generation report as a proxy sends it for one checkout call: request and response components,
 * a dozen collected headers, 10 matches over 4 categories, Envoy's connection attributes and the pod's
 * environment; about 1 KB encoded.
 */
export function benchTransaction(variant: TransactionVariant = {}): MatchDataRequest {
  const start = 1_750_000_000_000n * MS;
  // Proxies send a header's value only where the policy reports it; every header has its size.
  const header = (
    name: string,
    value: string,
    at: bigint,
    options: { matches?: string[]; reported?: boolean } = {},
  ) => {
    const matches = options.matches ?? [];
    return {
      name,
      timeHeaderStart: at,
      timeHeaderEnd: 0n,
      matches: matches.map((categoryName) => ({ categoryName, matcherPath: "" })),
      headerSize: BigInt(Buffer.byteLength(value)),
      header: options.reported === false ? undefined : bytes(value),
      categoryPerformanceUs: matches.length > 0 ? { [matches[0] as string]: 40n } : {},
    };
  };
  const match = (categoryName: string, matcherPath: string) => ({ categoryName, matcherPath });
  return {
    apiKey: variant.apiKey ?? "prod",
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
    policyPath: variant.policyPath ?? "shop.example.com/cart/checkout",
    commit: "0123abcd",
    token: variant.token ?? "user-42",
    ip: variant.ip ?? "192.168.7.7",
    categoryPerformanceUs: {},
    connectionInfo: {
      listener_direction: "2",
      "upstream.uri_san_peer_certificate": "spiffe://cluster.local/ns/shop/sa/payments",
      "upstream.address": "10.8.0.12:8080",
    },
    environment: {
      ISTIO_META_WORKLOAD_NAME: "checkout",
      POD_NAME: "checkout-5c6d8f7b9-x2kqp",
      HOSTNAME: "checkout-5c6d8f7b9-x2kqp",
    },
    request: {
      timeHeaderStart: start,
      timeBodyStart: start + 1n * MS,
      timeBodyEnd: start + 5n * MS,
      headerMatches: [
        header(":method", "POST", start),
        header(":path", "/cart/checkout", start),
        header(":authority", "shop.example.com", start),
        header("content-type", "application/json", start),
        header("authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30", start, {
          matches: ["access_token"],
          reported: false,
        }),
        header("x-request-id", "5b0e9a3c-8f1d-4b7a", start, { reported: false }),
        header("user-agent", "curl/8.5.0", start, { reported: false }),
      ],
      bodyMatches: [match("credit_card", "payment.card.number"), match("email", "customer.email")],
      bodySize: 512n,
      categoryPerformanceUs: { credit_card: 400n, email: 150n },
    },
    response: {
      timeHeaderStart: start + 20n * MS,
      timeBodyStart: start + 21n * MS,
      timeBodyEnd: start + 25n * MS,
      headerMatches: [
        header(":status", variant.status ?? "200", start + 20n * MS),
        header("content-type", "application/json", start + 20n * MS),
        header("set-cookie", "session=4f2a9c; Path=/; HttpOnly", start + 20n * MS, {
          matches: ["access_token"],
          reported: false,
        }),
        header("x-envoy-upstream-service-time", "18", start + 20n * MS, { reported: false }),
        header("date", "Mon, 23 Jun 2025 10:00:00 GMT", start + 20n * MS, { reported: false }),
      ],
      bodyMatches: [
        match("email", "order.email"),
        match("email", "order.billing.email"),
        match("email", "order.shipping.email"),
        match("phone_number", "order.phone"),
        match("phone_number", "order.billing.phone"),
        match("credit_card", "order.payment.last4"),
      ],
      bodySize: 4096n,
      categoryPerformanceUs: { email: 1000n, phone_number: 500n, credit_card: 200n },
    },
  };
}

export function encodedTransaction(variant: TransactionVariant = {}): Buffer {
  return Buffer.from(MatchDataRequest.encode(benchTransaction(variant)).finish());
}
