// biome-ignore-all lint/suspicious/noThenProperty: `then` is a JSON Schema keyword here, not a promise.
/**
 * JSON Schema of a LeakSignal policy, written from the policy documentation.
 *
 * Conventions:
 * - A custom YAML tag `!name value` reaches this schema as `{ name: value }` (see yaml-document.ts), the way the
 *   proxy reads it, so `internal: !national_phone US` and `internal: {national_phone: US}` validate alike.
 * - Objects list their known keys with `additionalProperties: false`; the config parser reports an unknown key as
 *   a warning (an error with `strict`), since newer proxies understand keys this agent does not know yet.
 * - Unions are written as `if`/`then`/`else` on the value's type, never `oneOf`, so an error names one branch.
 * - Regexes are Rust syntax, validated by the proxy; they are only checked to be text here.
 * - `messages` (keyword → text) replaces ajv's wording for errors raised by the schema object that holds it.
 */

type Schema = Record<string, unknown>;

const ref = (name: string): Schema => ({ $ref: `#/$defs/${name}` });

/** The proxy reads any plain scalar as text where it expects text (`raw: 123` is the string "123"). */
const text: Schema = { type: ["string", "number", "boolean"] };

/** One value or a list of them. */
const oneOrMore = (item: Schema): Schema => ({
  if: { type: "array" },
  then: { type: "array", items: item },
  else: item,
});

/** An externally tagged enum value: exactly one of the known keys. */
const oneKeyOf = (properties: Schema): Schema => ({
  type: "object",
  minProperties: 1,
  maxProperties: 1,
  properties,
  additionalProperties: false,
  messages: { minProperties: "must have exactly one key", maxProperties: "must have exactly one key" },
});

/** A unit variant spelled as a string, or a variant with data spelled as a one-key mapping (or a `!tag`). */
const wordOrOneKeyOf = (words: readonly string[], properties: Schema): Schema => ({
  if: { type: "object" },
  then: oneKeyOf(properties),
  else: { enum: words },
});

const object = (properties: Schema, extra: Schema = {}): Schema => ({
  type: "object",
  properties,
  additionalProperties: false,
  ...extra,
});

const mapOf = (value: Schema): Schema => ({ type: "object", additionalProperties: value });
const listOf = (item: Schema): Schema => ({ type: "array", items: item });
const count: Schema = { type: "integer", minimum: 0 };

export const REPORT_STYLES = ["raw", "partial_sha256", "sha256", "none"] as const;
export const PARSERS = ["text", "json", "grpc", "filebeat", "tls", "msgpack", "fluentd", "none"] as const;

const HASH_TYPES = [
  "bcrypt",
  "sha256_crypt",
  "sha512_crypt",
  "md5_crypt",
  "sha1_crypt",
  "sun_md5_crypt",
  "argon2",
  "bcrypt_sha256",
  "phpass",
  "pbkdf2_sha1",
  "pbkdf2_sha256",
  "pbkdf2_sha512",
  "scram",
  "scrypt",
  "apr_md5_crypt",
  "cta_pbkdf2_sha1",
  "dlitz_pbkdf2_sha1",
  "mssql2000",
  "mssql2005",
  "mysql141",
  "postgres_md5",
  "oracle11",
  "bsd_nthash",
  "django_pbkdf2_sha1",
  "django_pbkdf2_sha256",
  "django_salted_sha1",
  "django_salted_md5",
  "django_des_crypt",
  "grub_pbkdf2_sha512",
];

const ERROR_TEXT_TYPES = [
  "js_error",
  "py_error",
  "java_error",
  "rust_error",
  "ruby_error",
  "go_error",
  "php_error",
  "mysql_error",
  "postgres_error",
  "redis_error",
  "mongodb_error",
  "type_error",
  "uncaught",
  "socket_error",
  "operation_not_supported",
  "callback",
  "segfault",
  "runtime_error",
  "out_of_memory",
  "permission_denied",
  "command_not_found",
  "js_unknown_argument",
  "js_invalid_invocation",
  "js_bug_message",
  "envoy_segfault",
];

const MATCH_CONTENT_TYPES = ["text", "json", "grpc", "filebeat", "tls", "msgpack", "fluentd"];

const SEARCH_LOCATIONS = [
  "request_body",
  "downstream",
  "request_header",
  "upstream",
  "response_body",
  "response_header",
  "all_body",
  "all_header",
  "all",
];

const SBAC_STAGES = [
  "pre_request_headers",
  "on_request_header_chunk",
  "post_request_headers",
  "on_request_body_chunk",
  "post_request_body",
  "on_response_header_chunk",
  "post_response_headers",
  "on_response_body_chunk",
  "post_response_body",
  "on_response_trailer_chunk",
  "post_response_trailers",
  "any",
];

const hashTypes = oneOrMore({ enum: HASH_TYPES });
const errorTextTypes = oneOrMore({ enum: ERROR_TEXT_TYPES });

const defs: Record<string, Schema> = {
  text,
  /** Rust regex syntax, checked by the proxy. */
  regex: text,
  textList: oneOrMore(text),

  // Match rules: a bare string is a `raw` match.
  matchRule: {
    type: ["string", "number", "boolean", "object"],
    if: { type: "object" },
    then: oneKeyOf({
      raw: text,
      raw_insensitive: text,
      rawInsensitive: text,
      regex: ref("regex"),
      except: text,
      except_regex: ref("regex"),
      exceptInsensitive: text,
      except_insensitive: text,
      internal: ref("internalMatcher"),
      and: ref("matchRules"),
      correlate: ref("correlate"),
    }),
  },
  matchRules: oneOrMore(ref("matchRule")),
  internalMatcher: wordOrOneKeyOf(["routing_number", "credit_card", "int_phone", "sql", "hash", "error_text"], {
    national_phone: text,
    hash: { if: { type: "null" }, else: hashTypes },
    error_text: { if: { type: "null" }, else: errorTextTypes },
  }),
  correlate: object({
    interest: { enum: ["primary", "secondary", "all"] },
    max_distance: count,
    matches: ref("matchRules"),
    match_group: text,
  }),

  // Categories: a list of match rules, or the tagged form (`Matchers:`, or `matchers:` with a `tag`).
  category: {
    type: ["array", "object"],
    if: { type: "array" },
    then: listOf(ref("matchRule")),
    else: {
      if: { required: ["Matchers"] },
      then: object({
        Matchers: ref("matchRules"),
        matchers: { not: {}, messages: { not: "cannot be combined with Matchers" } },
        tag: { not: {}, messages: { not: "cannot be combined with Matchers; use matchers with tag" } },
      }),
      else: object({ matchers: ref("matchRules"), tag: text }, { required: ["matchers"] }),
    },
  },

  // Endpoints.
  endpoint: object({
    matches: ref("textList"),
    config: mapOf(ref("matchConfig")),
    token_extractor: ref("tokenExtractor"),
    report_style: ref("reportStyle"),
    report_bits: ref("reportBits"),
    exploit_detection: ref("exploitDetection"),
    request_extractors: ref("bodyExtractors"),
    response_extractors: ref("bodyExtractors"),
  }),
  matchConfig: object({
    matcher: text,
    name: text,
    action: wordOrOneKeyOf(["ignore", "alert", "block"], { redact: text }),
    content_types: oneOrMore({ enum: MATCH_CONTENT_TYPES }),
    contexts: {
      type: ["string", "number", "boolean", "array", "object"],
      if: { type: "object" },
      then: oneKeyOf({ header: text }),
      else: ref("textList"),
    },
    search: { enum: SEARCH_LOCATIONS },
    report_style: ref("reportStyle"),
    report_bits: ref("reportBits"),
  }),
  reportStyle: { enum: [...REPORT_STYLES] },
  reportBits: { type: "integer", minimum: 0, maximum: 256 },
  tokenExtractor: object({
    location: { enum: ["request", "request_cookie", "response"] },
    header: text,
    regex: ref("regex"),
    hash: { type: "boolean" },
    extractor: listOf(ref("tokenStep")),
  }),
  tokenStep: wordOrOneKeyOf(["jwt_decode", "hash"], {
    regex: ref("regex"),
    json_path: text,
    metadata: mapOf(oneOrMore(ref("tokenStep"))),
  }),
  exploitDetection: object({
    hashes: hashTypes,
    error_text: errorTextTypes,
    measure_entropy: { type: "boolean" },
    detect_non_ascii: { type: "boolean" },
  }),
  bodyExtractors: {
    type: "object",
    if: { anyOf: [{ required: ["include_all"] }, { required: ["extractors"], properties: { extractors: mapOf({}) } }] },
    then: object({ extractors: mapOf(ref("bodyExtractor")), include_all: { type: "boolean" } }),
    else: mapOf(ref("bodyExtractor")),
  },
  bodyExtractor: {
    type: ["string", "number", "boolean", "array", "object"],
    if: { type: "array" },
    then: listOf(ref("bodyExtractorPath")),
    else: ref("bodyExtractorPath"),
  },
  bodyExtractorPath: {
    type: ["string", "number", "boolean", "object"],
    if: { type: "object" },
    then: object({ path: text, regex: ref("regex") }, { required: ["path"] }),
  },

  // Service identification.
  serviceName: object({
    cluster: ref("serviceSource"),
    ns: ref("serviceSource"),
    sa: ref("serviceSource"),
    workload: ref("serviceSource"),
  }),
  serviceSource: wordOrOneKeyOf(["none", "istio"], {
    env: text,
    attrs: text,
    raw: text,
    default: object({ from: ref("serviceSource"), to: ref("serviceSource") }),
  }),

  // Rules, SBAC and body collection share rule filters.
  rule: object({
    grouping: { enum: ["per_inbound_service", "per_outbound_service", "per_endpoint", "global"] },
    by: ref("ruleBy"),
    count_by: ref("ruleBy"),
    action: { enum: ["block", "alert_block", "alert", "nothing"] },
    timespan_secs: count,
    limit: count,
    filter: ref("ruleFilter"),
    severity: { enum: ["Routine", "Notable", "Concern", "Immediate"] },
    muted: { type: "boolean" },
  }),
  ruleBy: wordOrOneKeyOf(["ip", "token", "service"], { header: text, request_match: text }),
  ruleFilter: wordOrOneKeyOf(["response_outbound", "response_inbound"], {
    endpoint: ref("textList"),
    exclude_endpoint: ref("textList"),
    policy_path: ref("textList"),
    exclude_policy_path: ref("textList"),
    peer_service: oneOrMore(ref("serviceFilter")),
    exclude_peer_service: oneOrMore(ref("serviceFilter")),
    local_service: oneOrMore(ref("serviceFilter")),
    exclude_local_service: oneOrMore(ref("serviceFilter")),
    token: ref("matchRules"),
    exclude_token: ref("matchRules"),
    ip: ref("textList"),
    exclude_ip: ref("textList"),
    request_matches: mapOf(ref("matchRuleFilters")),
    response_matches: mapOf(ref("matchRuleFilters")),
    downstream_matches: mapOf(ref("matchRuleFilters")),
    upstream_matches: mapOf(ref("matchRuleFilters")),
    request_headers: mapOf(ref("matchRules")),
    exclude_request_headers: mapOf(ref("matchRules")),
    response_headers: mapOf(ref("matchRules")),
    exclude_response_headers: mapOf(ref("matchRules")),
    response_trailers: mapOf(ref("matchRules")),
    exclude_response_trailers: mapOf(ref("matchRules")),
    request_cookie: mapOf(ref("matchRules")),
    exclude_request_cookie: mapOf(ref("matchRules")),
    response_outbound: {},
    response_inbound: {},
    any: oneOrMore(ref("ruleFilter")),
    all: oneOrMore(ref("ruleFilter")),
  }),
  serviceFilter: {
    type: ["string", "number", "boolean", "object"],
    if: { type: "object" },
    then: oneKeyOf({
      cluster: ref("matchRules"),
      exclude_cluster: ref("matchRules"),
      ns: ref("matchRules"),
      exclude_ns: ref("matchRules"),
      sa: ref("matchRules"),
      exclude_sa: ref("matchRules"),
      workload: ref("matchRules"),
      exclude_workload: ref("matchRules"),
      response_outbound: {},
      response_inbound: {},
      any: oneOrMore(ref("serviceFilter")),
      all: oneOrMore(ref("serviceFilter")),
    }),
  },
  matchRuleFilters: oneOrMore(ref("matchRuleFilter")),
  matchRuleFilter: {
    type: ["integer", "object"],
    if: { type: "object" },
    then: object({
      path: ref("textList"),
      exclude_path: ref("textList"),
      count,
      value: ref("matchRules"),
      any: listOf(ref("matchRuleFilter")),
      all: listOf(ref("matchRuleFilter")),
    }),
  },
  sbacRule: object({ name: text, stage: { enum: SBAC_STAGES }, filter: ref("ruleFilter") }),
  bodyCollection: object({
    mode: { enum: ["request_only", "downstream_only", "response_only", "upstream_only", "all"] },
    sample_rate: { type: "number", minimum: 0, maximum: 1 },
    max_body_collection_mb: { type: "number", minimum: 0 },
    filter: oneOrMore(ref("ruleFilter")),
  }),

  // Parsers.
  parser: { enum: [...PARSERS] },
  portFilter: wordOrOneKeyOf(["always", "never"], {
    src: ref("portFilter"),
    dest: ref("portFilter"),
    port: ref("port"),
    range: object({ start: ref("port"), end: ref("port") }, { required: ["start", "end"] }),
    any: listOf(ref("portFilter")),
    all: listOf(ref("portFilter")),
    not: listOf(ref("portFilter")),
  }),
  port: { type: "integer", minimum: 0, maximum: 65535 },
  uploadInterval: wordOrOneKeyOf(["none"], {
    frames: count,
    matches: count,
    time: count,
    all: listOf(ref("uploadInterval")),
    any: listOf(ref("uploadInterval")),
  }),
};

export const POLICY_SCHEMA_ID = "leaksignal-policy";

export const policySchema: Schema = {
  $id: POLICY_SCHEMA_ID,
  $defs: defs,
  ...object({
    categories: mapOf(ref("category")),
    endpoints: listOf(ref("endpoint")),
    report_style: ref("reportStyle"),
    report_bits: ref("reportBits"),
    local_service_name: ref("serviceName"),
    peer_service_name: ref("serviceName"),
    rules: listOf(ref("rule")),
    sbac: listOf(ref("sbacRule")),
    body_collection: listOf(ref("bodyCollection")),
    collected_request_headers: listOf(text),
    collected_response_headers: listOf(text),
    header_collection: { enum: ["all_request", "all_response", "all", "none"] },
    content_types: {
      type: ["array", "object"],
      if: { type: "array" },
      then: listOf(mapOf(ref("parser"))),
      else: mapOf(ref("parser")),
    },
    stream_types: { type: "object", propertyNames: ref("parser"), additionalProperties: ref("portFilter") },
    file_types: mapOf(ref("parser")),
    stream_upload_interval: ref("uploadInterval"),
    collected_env_vars: { if: { type: "array" }, then: listOf(text), else: { enum: ["all", "none"] } },
    path_groups: listOf(text),
  }),
};
