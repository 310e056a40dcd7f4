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

/** The port proxies connect to: told, step by step, to stop taking work before it is stopped. */
export interface Ingress {
  /** Readiness turns false (`GET /ready` answers 503); everything is still served. */
  markNotReady(): void;
  /** No new connections, GOAWAY on every HTTP/2 connection; calls in flight go on. */
  stopAccepting(): void;
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
  readonly ingress: Ingress;
  /** On stop, how long readiness is false while everything is still served, before the ingress stops accepting. */
  readonly shutdownDelayMs: number;
  /** Serving components in start order (exposition before ingestion); stopped in reverse. */
  readonly servers: ReadonlyArray<{ readonly name: string; readonly component: Component }>;
}

/** The running agent: loads its configuration, starts its servers in order, applies reloads, drains on stop. */
export class Agent {
  private readonly started: Array<{ name: string; component: Component }> = [];
  private configWatched = false;
  private serving = false;
  private stopping: Promise<void> | undefined;

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
    this.serving = true;
  }

  /** Re-reads the configuration now (SIGHUP). */
  reload(): Promise<void> {
    return this.parts.config.reload();
  }

  /**
   * The shutdown sequence, in this order. Readiness turns false, and for the shutdown delay everything is
   * still served while load balancers take this instance out. The ingress stops accepting and sends GOAWAY,
   * so proxies open their next streams on another instance. Policy streams end with UNAVAILABLE: their
   * proxies reconnect at once, elsewhere, since their connection is going away. In-flight calls drain while
   * the servers stop in reverse order (ingestion first, the metrics last). Safe twice.
   */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    const { ingress, registry, logger, shutdownDelayMs } = this.parts;
    ingress.markNotReady();
    if (this.serving && shutdownDelayMs > 0) {
      logger.info("not ready; still serving until the shutdown delay is over", { delay_ms: shutdownDelayMs });
      await new Promise((resolve) => setTimeout(resolve, shutdownDelayMs));
    }
    ingress.stopAccepting();
    if (this.serving)
      logger.info("stopped accepting; ending policy streams", { policy_streams: registry.waitingTotal });
    registry.disconnectAll("shutdown");
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
    this.parts.telemetry.configure(config.telemetry);
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
