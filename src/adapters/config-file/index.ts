export { ConfigFile, type ConfigFileOptions, DEFAULT_DEBOUNCE_MS } from "./config-file";
export { EmbeddedConfig } from "./embedded-config";
export {
  checkConfig,
  EMBEDDED_DEFAULT_CONFIG,
  EMBEDDED_DEFAULT_SOURCE,
  type ParseConfigOptions,
  type ParsedConfig,
  parseConfig,
  parseEmbeddedDefaultConfig,
  readConfigText,
  validateConfigFile,
} from "./parse-config";
