import type { DeploymentChanges } from "../domain/policy/deployment-set";
import type { ProxyRegistry } from "../domain/proxies/proxy-registry";
import type { AgentConfig, ConfigReload, ConfigSource, ProxySourceConfig } from "../ports/config-source.port";
import type { Logger } from "../ports/logger.port";
import type { TelemetrySink } from "../ports/telemetry-sink.port";

/** Anything that owns a socket, a watcher or a timer. */
export interface Component {
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** The one thing that cares which proxy source is live. */
export interface ProxySourceSwitch {
  setSource(source: ProxySourceConfig | undefined): void;
}

export class ComponentStartError extends Error {
  constructor(
    readonly component: string,
    cause: unknown,
  ) {
    super(`${component} failed to start: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

export interface AgentParts {
  readonly logger: Logger;
  readonly registry: ProxyRegistry;
  readonly telemetry: TelemetrySink;
  readonly config: ConfigSource;
  readonly proxySource: ProxySourceSwitch;
  /** Serving components in start order (exposition before ingestion); stopped in reverse. */
  readonly servers: ReadonlyArray<{ readonly name: string; readonly component: Component }>;
}

/** The running agent: loads its configuration, starts its servers in order, applies reloads, drains on stop. */
export class Agent {
  private readonly started: Array<{ name: string; component: Component }> = [];
  private configWatched = false;

  constructor(private readonly parts: AgentParts) {}

  /** Throws ConfigError on an invalid config, ComponentStartError when a server cannot start. */
  async start(): Promise<void> {
    const config = await this.parts.config.load();
    this.apply(config);
    this.parts.telemetry.configReloaded(true);
    this.parts.logger.info(`configuration loaded from ${config.source}`, {
      deployments: config.deployments.names(),
      proxy_source: config.proxySource?.type ?? "none",
    });
    for (const server of this.parts.servers) {
      try {
        await server.component.start();
      } catch (cause) {
        await this.stop();
        throw new ComponentStartError(server.name, cause);
      }
      this.started.push(server);
    }
    await this.parts.config.start((reload) => this.onReload(reload));
    this.configWatched = true;
  }

  /** Re-reads the configuration now (SIGHUP). */
  reload(): Promise<void> {
    return this.parts.config.reload();
  }

  /** Ends policy streams (proxies reconnect elsewhere), then stops servers in reverse order. Safe twice. */
  async stop(): Promise<void> {
    this.parts.registry.disconnectAll("shutdown");
    if (this.configWatched) {
      this.configWatched = false;
      await this.parts.config.stop();
    }
    while (this.started.length > 0) {
      const server = this.started.pop();
      await server?.component.stop();
    }
  }

  private apply(config: AgentConfig): DeploymentChanges {
    const changes = this.parts.registry.replaceDeployments(config.deployments);
    this.parts.proxySource.setSource(config.proxySource);
    return changes;
  }

  private onReload(reload: ConfigReload): void {
    this.parts.telemetry.configReloaded(!("error" in reload));
    if ("error" in reload) {
      this.parts.logger.error("configuration reload failed; keeping the last good configuration", {
        error: reload.error.message,
      });
      return;
    }
    const { config } = reload;
    const changes = this.apply(config);
    const names = (list: ReadonlyArray<{ name: string }>) => list.map((d) => d.name);
    this.parts.logger.info(
      `configuration reloaded from ${config.source}: ${changes.added.length} added, ${changes.changed.length} changed, ${changes.removed.length} removed`,
      { added: names(changes.added), changed: names(changes.changed), removed: names(changes.removed) },
    );
  }
}
