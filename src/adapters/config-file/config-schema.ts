// biome-ignore-all lint/suspicious/noThenProperty: `then` is a JSON Schema keyword here, not a promise.
import { POLICY_SCHEMA_ID } from "./policy-schema";

/** `10m`, `90s`, `1h`, `500ms`; `0s` (any zero) means off. */
export const DURATION_PATTERN = "^[0-9]+(ms|s|m|h)$";
const LABEL_MODES = ["raw", "hash", "drop"];

/**
 * JSON Schema of the agent's config file. Conventions as in policy-schema.ts: unknown keys are warnings,
 * `messages` rewords an error. Keep new top-level sections as siblings of `policies`.
 */
export const configSchema: Record<string, unknown> = {
  type: "object",
  required: ["policies"],
  properties: {
    policies: { type: "object", additionalProperties: { $ref: POLICY_SCHEMA_ID } },
    // Deployment name → the api keys its proxies must present. Absent, null or `{}`: every deployment's name is its key.
    api_keys: {
      type: ["object", "null"],
      additionalProperties: {
        type: "array",
        minItems: 1,
        items: {
          type: "string",
          minLength: 1,
          messages: {
            type: "must be a string (quote keys that YAML would read as numbers)",
            minLength: "must not be empty",
          },
        },
        messages: { minItems: "must list at least one key; remove the entry to let the deployment name be the key" },
      },
    },
    // Bounds on the Prometheus series; absent, null or `{}`: the defaults (DEFAULT_TELEMETRY_SETTINGS).
    metrics: {
      type: ["object", "null"],
      properties: {
        max_series_per_metric: {
          type: "integer",
          minimum: 1,
          messages: { type: "must be a whole number", minimum: "must be at least 1" },
        },
        series_ttl: {
          type: "string",
          pattern: DURATION_PATTERN,
          messages: {
            type: "must be a duration such as 10m, 90s or 1h, or 0s to keep series for the agent's lifetime",
            pattern: "must be a duration such as 10m, 90s or 1h, or 0s to keep series for the agent's lifetime",
          },
        },
        labels: {
          type: ["object", "null"],
          properties: { ip: { enum: LABEL_MODES }, token: { enum: LABEL_MODES } },
          additionalProperties: false,
        },
        label_hash_key: {
          type: "string",
          minLength: 16,
          messages: { type: "must be a string", minLength: "must be at least 16 characters long" },
        },
      },
      additionalProperties: false,
      // A hashed label needs the key: without one, hashes would change with every restart and differ between replicas.
      if: {
        type: "object",
        required: ["labels"],
        properties: {
          labels: {
            type: "object",
            anyOf: [
              { required: ["ip"], properties: { ip: { const: "hash" } } },
              { required: ["token"], properties: { token: { const: "hash" } } },
            ],
          },
        },
      },
      then: {
        required: ["label_hash_key"],
        messages: { required: 'missing required key "label_hash_key": a label in hash mode needs a key' },
      },
    },
    proxy_source: {
      type: ["object", "null"],
      // Absent, null or `{}` all mean "not set": LS_BUNDLE_DIR may then apply.
      if: { type: "object", minProperties: 1 },
      then: {
        required: ["type"],
        properties: { type: { enum: ["bundled", "remote_passthrough"] } },
        allOf: [
          {
            if: { properties: { type: { const: "bundled" } }, required: ["type"] },
            then: {
              required: ["path"],
              properties: {
                type: {},
                path: { type: "string", minLength: 1, messages: { minLength: "must not be empty" } },
                origin: { not: {}, messages: { not: "is only used with type remote_passthrough" } },
              },
              additionalProperties: false,
            },
          },
          {
            if: { properties: { type: { const: "remote_passthrough" } }, required: ["type"] },
            then: {
              required: ["origin"],
              properties: {
                type: {},
                origin: {
                  type: "string",
                  pattern: "^https?://[^/?#\\s]+(/[^?#\\s]*)?$",
                  messages: {
                    type: "must be an http:// or https:// URL",
                    pattern: "must be an http:// or https:// URL, optionally with a path, without query or fragment",
                  },
                },
                path: { not: {}, messages: { not: "is only used with type bundled" } },
              },
              additionalProperties: false,
            },
          },
        ],
      },
    },
  },
  additionalProperties: false,
};
