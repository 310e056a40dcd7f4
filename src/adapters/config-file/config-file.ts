import { type FSWatcher, statSync, watch } from "node:fs";
import { dirname, resolve } from "node:path";
import {
  type AgentConfig,
  type ConfigReload,
  type ConfigSource,
  formatConfigProblem,
} from "../../ports/config-source.port";
import type { Logger } from "../../ports/logger.port";
import { asWarning, type ParseConfigOptions, parseConfig, readConfigText } from "./parse-config";

export interface ConfigFileOptions extends ParseConfigOptions {
  /** Quiet time after the last change in the directory before the file is re-read. */
  readonly debounceMs?: number | undefined;
}

export const DEFAULT_DEBOUNCE_MS = 200;

/**
 * The config file at `LS_CONFIG_PATH`, reloaded when it changes.
 *
 * The directory is watched rather than the file: editors replace the file (write a temp file, rename it over),
 * and a Kubernetes ConfigMap mount swaps a `..data` symlink next to it, and neither touches the inode a file
 * watch would follow. Any event in the directory re-reads the path (following symlinks) after a quiet period,
 * and a reload is reported only when what the path holds differs from what was last seen.
 *
 * If the directory itself is deleted, its watch goes silent; the ancestor nearest to it that still exists is
 * watched instead until the directory is back, and the new directory is watched from then on.
 */
export class ConfigFile implements ConfigSource {
  /** The watched directory, and its inode: a directory deleted and made again is another one. */
  private watched: { directory: string; inode: number; watcher: FSWatcher } | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private onReload: ((reload: ConfigReload) => void) | undefined;
  /** What the path held at the last read: its text, or why it could not be read. */
  private lastSeen: string | undefined;
  /** Reads run one at a time, in order. */
  private reading: Promise<unknown> = Promise.resolve();

  constructor(
    readonly path: string,
    private readonly options: ConfigFileOptions,
    private readonly logger: Logger,
  ) {}

  /** Reads and validates the file; throws ConfigError listing every problem. */
  async load(): Promise<AgentConfig> {
    const text = await readConfigText(this.path);
    const config = this.parse(text);
    this.lastSeen = `text:${text}`;
    return config;
  }

  async start(onReload: (reload: ConfigReload) => void): Promise<void> {
    if (this.watched) throw new Error(`already watching ${this.path}`);
    const directory = this.directory;
    try {
      this.watch(directory);
    } catch (error) {
      throw new Error(`cannot watch ${directory} for changes to ${this.path}: ${(error as Error).message}`);
    }
    this.onReload = onReload;
  }

  /** Re-reads the file now and reports the result even if nothing changed (SIGHUP). */
  async reload(): Promise<void> {
    if (this.watched) this.rewatchIfMoved();
    await this.enqueue(true);
  }

  async stop(): Promise<void> {
    clearTimeout(this.debounce);
    this.debounce = undefined;
    this.watched?.watcher.close();
    this.watched = undefined;
    this.onReload = undefined;
    await this.reading;
  }

  private get directory(): string {
    return dirname(resolve(this.path));
  }

  private watch(directory: string): void {
    const inode = statSync(directory).ino;
    const watcher = watch(directory, () => this.schedule());
    watcher.on("error", (error) => {
      this.logger.error("config file watch failed; changes are picked up again on SIGHUP", {
        path: this.path,
        directory,
        error: error.message,
      });
    });
    this.watched?.watcher.close();
    this.watched = { directory, inode, watcher };
  }

  /**
   * Watches the config's directory again if it was deleted, replaced or has come back. Checked after each
   * burst of events and again after every re-watch, so a directory made meanwhile is not missed.
   */
  private rewatchIfMoved(): void {
    for (;;) {
      const watched = this.watched;
      if (!watched) return;
      const nearest = nearestDirectory(this.directory);
      if (nearest?.path === watched.directory && nearest.inode === watched.inode) return;
      if (!nearest) return;
      try {
        this.watch(nearest.path);
      } catch (error) {
        this.logger.error("config file watch failed; changes are picked up again on SIGHUP", {
          path: this.path,
          directory: nearest.path,
          error: (error as Error).message,
        });
        return;
      }
      const watching = nearest.path === this.directory ? "its directory is back" : "its directory is gone";
      this.logger.warn(`config file watch moved: ${watching}`, { path: this.path, watching: nearest.path });
    }
  }

  private schedule(): void {
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      this.rewatchIfMoved();
      void this.enqueue(false);
    }, this.options.debounceMs ?? DEFAULT_DEBOUNCE_MS);
  }

  private enqueue(force: boolean): Promise<ConfigReload | undefined> {
    const next = this.reading.then(() => this.check(force));
    this.reading = next;
    return next;
  }

  private async check(force: boolean): Promise<ConfigReload | undefined> {
    let seen: string | undefined;
    let reload: ConfigReload;
    try {
      const text = await readConfigText(this.path);
      seen = `text:${text}`;
      if (!force && seen === this.lastSeen) return undefined;
      reload = { config: this.parse(text) };
    } catch (error) {
      seen ??= `error:${(error as Error).message}`;
      if (!force && seen === this.lastSeen) return undefined;
      reload = { error: error as Error };
    }
    this.lastSeen = seen;
    const onReload = this.onReload;
    if (onReload) {
      try {
        onReload(reload);
      } catch (error) {
        this.logger.error("applying a config reload failed", { path: this.path, error: (error as Error).message });
      }
    }
    return reload;
  }

  private parse(text: string): AgentConfig {
    const { config, warnings } = parseConfig(text, this.path, this.options);
    for (const warning of warnings) this.logger.warn(formatConfigProblem(asWarning(warning)), { path: this.path });
    return config;
  }
}

/** `directory` if it exists, else its nearest existing ancestor (the root, at worst). */
function nearestDirectory(directory: string): { path: string; inode: number } | undefined {
  for (let path = directory; ; path = dirname(path)) {
    try {
      const stat = statSync(path);
      if (stat.isDirectory()) return { path, inode: stat.ino };
    } catch {
      // missing or unreadable: try its parent
    }
    if (dirname(path) === path) return undefined;
  }
}
