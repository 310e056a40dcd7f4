import "reflect-metadata";
import { ConfigError } from "../ports/config-source.port";
import { Logger } from "../ports/logger.port";
import { Agent } from "./agent";
import { createContainer, SERVING_ADDRESSES, type ServingAddresses } from "./container";
import { readSettings, SettingsError } from "./settings";
import { AGENT_VERSION } from "./version";

/** Proxies and Kubernetes expect the process gone well within terminationGracePeriodSeconds (30 s by default). */
export const SHUTDOWN_DEADLINE_MS = 10_000;

/** Runs the agent until SIGTERM/SIGINT. Exit codes: 0 after a clean stop, 2 on invalid settings or config, 1 otherwise. */
export async function runAgent(env: NodeJS.ProcessEnv): Promise<void> {
  let settings: ReturnType<typeof readSettings>;
  try {
    settings = readSettings(env);
  } catch (error) {
    if (!(error instanceof SettingsError)) throw error;
    process.stderr.write(`leakagent: ${error.message}\n`);
    process.exit(2);
  }

  const container = createContainer(settings);
  const logger = container.get<Logger>(Logger);
  const agent = container.get(Agent);
  process.on("uncaughtException", (error) => {
    logger.error("uncaught exception; exiting", { error: error.stack ?? String(error) });
    process.exit(1);
  });

  try {
    await agent.start();
  } catch (error) {
    if (error instanceof ConfigError) {
      logger.error("invalid configuration", { problems: error.problems.length });
      process.stderr.write(`${error.message}\n`);
      process.exit(2);
    }
    logger.error("failed to start", { error: error instanceof Error ? error.message : String(error) });
    process.exit(1);
  }

  const addresses = container.get<ServingAddresses>(SERVING_ADDRESSES)();
  logger.info("serving", { version: AGENT_VERSION, ...addresses });

  let stopping = false;
  const shutdown = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info("shutting down", { signal });
    const deadline = setTimeout(() => {
      logger.error("shutdown did not finish in time; exiting");
      process.exit(1);
    }, SHUTDOWN_DEADLINE_MS);
    agent.stop().then(
      () => {
        clearTimeout(deadline);
        logger.info("stopped");
        process.exit(0);
      },
      (error: unknown) => {
        logger.error("shutdown failed", { error: error instanceof Error ? error.message : String(error) });
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);
  process.on("SIGHUP", () => {
    logger.info("SIGHUP: reloading the configuration");
    void agent.reload();
  });
}

if (require.main === module) void runAgent(process.env);
