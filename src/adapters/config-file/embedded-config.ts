import type { AgentConfig, ConfigReload, ConfigSource } from "../../ports/config-source.port";
import { type ParseConfigOptions, parseEmbeddedDefaultConfig } from "./parse-config";

/** The configuration source when LS_CONFIG_PATH is not set: the built-in example, nothing to watch. */
export class EmbeddedConfig implements ConfigSource {
  private onReload: ((reload: ConfigReload) => void) | undefined;

  constructor(private readonly options: ParseConfigOptions) {}

  async load(): Promise<AgentConfig> {
    return parseEmbeddedDefaultConfig(this.options).config;
  }

  async start(onReload: (reload: ConfigReload) => void): Promise<void> {
    this.onReload = onReload;
  }

  async reload(): Promise<void> {
    this.onReload?.({ config: await this.load() });
  }

  async stop(): Promise<void> {
    this.onReload = undefined;
  }
}
