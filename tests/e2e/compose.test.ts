import { describe, expect, it } from "vitest";
import {
  COMPOSE_DIR,
  composeCheck,
  composeUnavailable,
  EXPECTED_CATEGORIES,
  pullImages,
} from "../../deploy/compose/check";

// The whole stack for real: Envoy with the LeakSignal Wasm filter (fetched through the agent), the
// agent built from this repository's Dockerfile, an upstream service with fake personal data,
// Prometheus and Grafana. Runs wherever `docker compose` has an engine and can pull images.

const UNAVAILABLE = composeUnavailable();
if (UNAVAILABLE) console.warn(`skipping the docker compose stack check (${COMPOSE_DIR}): ${UNAVAILABLE}`);

describe("the docker compose stack (npm run compose:check)", () => {
  it.skipIf(UNAVAILABLE)(
    "reports LeakSignal matches of requests through Envoy to Prometheus",
    async (context) => {
      const pullFailed = pullImages();
      if (pullFailed) {
        console.warn(`skipping the docker compose stack check: images cannot be pulled: ${pullFailed}`);
        context.skip(`images cannot be pulled: ${pullFailed}`);
      }
      const result = await composeCheck();
      for (const category of EXPECTED_CATEGORIES) expect(result.matches[category], category).toBeGreaterThan(0);
      expect(result.connectedProxies).toBeGreaterThan(0);
    },
    15 * 60_000,
  );
});
