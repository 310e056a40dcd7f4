import "reflect-metadata";
import { Container, ContainerModule, type interfaces } from "inversify";
import { Registry } from "prom-client";
import { ConfigFile, EmbeddedConfig } from "../adapters/config-file";
import { IngestionServer } from "../adapters/ingestion/ingestion-server";
import { MetricsServer } from "../adapters/prometheus/metrics-server";
import { PrometheusTelemetry } from "../adapters/prometheus/prometheus-telemetry";
import { ProxyRoute } from "../adapters/proxy-source/proxy-route";
import { createLogger } from "../adapters/winston/logger";
import { ProxyRegistry } from "../domain/proxies/proxy-registry";
import { ConfigSource } from "../ports/config-source.port";
import { Logger } from "../ports/logger.port";
import { TelemetrySink } from "../ports/telemetry-sink.port";
import { Agent } from "./agent";
import type { Settings } from "./settings";
import { AGENT_VERSION } from "./version";

/** Where the servers actually listen (ports resolved when 0 was asked for). */
export type ServingAddresses = () => { ingestion: string; prometheus: string };
export const SERVING_ADDRESSES = Symbol.for("leakagent.ServingAddresses");

// Adapters are plain classes: each module builds its own from what the container holds, so no
// adapter knows about inversify. Swapping an adapter means swapping its module.
const get = <T>(context: interfaces.Context, id: interfaces.ServiceIdentifier<T>): T => context.container.get<T>(id);

function coreModule(settings: Settings): ContainerModule {
  return new ContainerModule((bind) => {
    bind(Logger).toConstantValue(createLogger(settings.logLevel));
    bind(ProxyRegistry)
      .toDynamicValue((c) => new ProxyRegistry(get(c, TelemetrySink), settings.policyStreamLimits))
      .inSingletonScope();
    bind(Agent)
      .toDynamicValue(
        (c) =>
          new Agent({
            logger: get(c, Logger),
            registry: get(c, ProxyRegistry),
            telemetry: get(c, TelemetrySink),
            config: get(c, ConfigSource),
            proxySource: get(c, ProxyRoute),
            ingress: get(c, IngestionServer),
            shutdownDelayMs: settings.shutdownDelayMs,
            servers: [
              { name: "prometheus exposition", component: get(c, MetricsServer) },
              { name: "proxy source", component: get(c, ProxyRoute) },
              { name: "ingestion", component: get(c, IngestionServer) },
            ],
          }),
      )
      .inSingletonScope();
    bind<ServingAddresses>(SERVING_ADDRESSES).toDynamicValue((c) => () => ({
      ingestion: `${settings.ingestionBind.host}:${get(c, IngestionServer).port}`,
      prometheus: `${settings.prometheusBind.host}:${get(c, MetricsServer).address?.port}`,
    }));
  });
}

function prometheusModule(settings: Settings): ContainerModule {
  return new ContainerModule((bind) => {
    // One registry per agent, never prom-client's global one.
    const registry = new Registry();
    bind(TelemetrySink).toConstantValue(new PrometheusTelemetry(registry, AGENT_VERSION));
    bind(MetricsServer)
      .toDynamicValue((c) => new MetricsServer(settings.prometheusBind, registry, get(c, Logger)))
      .inSingletonScope();
  });
}

function configModule(settings: Settings): ContainerModule {
  const options = { bundleDir: settings.bundleDir, strict: settings.strictConfig };
  return new ContainerModule((bind) => {
    bind(ConfigSource)
      .toDynamicValue((c) =>
        settings.configPath
          ? new ConfigFile(settings.configPath, options, get(c, Logger))
          : new EmbeddedConfig(options),
      )
      .inSingletonScope();
  });
}

function proxySourceModule(settings: Settings): ContainerModule {
  return new ContainerModule((bind) => {
    bind(ProxyRoute)
      .toDynamicValue((c) => new ProxyRoute(get(c, TelemetrySink), get(c, Logger), settings.proxySource))
      .inSingletonScope();
  });
}

function ingestionModule(settings: Settings): ContainerModule {
  return new ContainerModule((bind) => {
    bind(IngestionServer)
      .toDynamicValue((c) => {
        const registry = get(c, ProxyRegistry);
        return new IngestionServer(
          {
            bind: settings.ingestionBind,
            maxMessageBytes: settings.maxMessageBytes,
            maxConnectionAgeMs: settings.maxConnectionAgeSeconds * 1000,
            limits: settings.ingestionLimits,
            keepalive: settings.keepalive,
            tls: settings.tls,
            routes: [get(c, ProxyRoute)],
            status: () => statusLine(registry.current.size),
          },
          registry,
          get(c, TelemetrySink),
          get(c, Logger),
        );
      })
      .inSingletonScope();
  });
}

/** `GET /` on the ingestion port. Deployment names are left out: each is also an api key. */
export function statusLine(deployments: number): string {
  return `leakagent ${AGENT_VERSION}: ${deployments} deployment${deployments === 1 ? "" : "s"} loaded`;
}

export function createContainer(settings: Settings): Container {
  const container = new Container();
  container.load(
    coreModule(settings),
    prometheusModule(settings),
    configModule(settings),
    proxySourceModule(settings),
    ingestionModule(settings),
  );
  return container;
}
