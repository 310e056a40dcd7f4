// biome-ignore-all lint/suspicious/noThenProperty: `then` is a JSON Schema keyword here, not a promise.
import { POLICY_SCHEMA_ID } from "./policy-schema";

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
