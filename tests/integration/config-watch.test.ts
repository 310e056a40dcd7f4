import { mkdir, mkdtemp, rename, rm, symlink, unlink, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConfigFile } from "../../src/adapters/config-file";
import { ConfigError, type ConfigReload } from "../../src/ports/config-source.port";
import type { Logger } from "../../src/ports/logger.port";

const DEBOUNCE_MS = 60;

/** A config whose single deployment's policy differs by report style. */
const configText = (style: string) => `policies:\n  shop:\n    report_style: ${style}\n`;

class RecordingLogger implements Logger {
  readonly lines: string[] = [];
  debug(message: string): void {
    this.lines.push(`debug ${message}`);
  }
  info(message: string): void {
    this.lines.push(`info ${message}`);
  }
  warn(message: string): void {
    this.lines.push(`warn ${message}`);
  }
  error(message: string): void {
    this.lines.push(`error ${message}`);
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Every reload reported, with a way to wait for the next ones. */
class Reloads {
  readonly seen: ConfigReload[] = [];
  readonly record = (reload: ConfigReload) => {
    this.seen.push(reload);
  };

  async waitFor(count: number, timeoutMs = 3000): Promise<ConfigReload> {
    const deadline = Date.now() + timeoutMs;
    while (this.seen.length < count) {
      if (Date.now() > deadline) throw new Error(`expected ${count} reloads, saw ${this.seen.length}`);
      await sleep(10);
    }
    const reload = this.seen[count - 1];
    if (!reload) throw new Error("unreachable");
    return reload;
  }
}

function reportStyleOf(reload: ConfigReload): string | undefined {
  if (!("config" in reload)) throw new Error(`expected a config, got ${reload.error.message}`);
  return reload.config.deployments.get("shop")?.policyText.match(/report_style: (\w+)/)?.[1];
}

describe("ConfigFile", () => {
  let dir: string;
  let source: ConfigFile | undefined;
  let reloads: Reloads;
  let logger: RecordingLogger;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "leakagent-config-"));
    reloads = new Reloads();
    logger = new RecordingLogger();
  });

  afterEach(async () => {
    await source?.stop();
    source = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  /** Loads `path` and starts watching it, as the agent does at boot. */
  async function watching(path: string): Promise<ConfigFile> {
    source = new ConfigFile(path, { debounceMs: DEBOUNCE_MS }, logger);
    await source.load();
    await source.start(reloads.record);
    return source;
  }

  async function plainFile(style = "raw"): Promise<string> {
    const path = join(dir, "config.yaml");
    await writeFile(path, configText(style));
    return path;
  }

  it("loads and validates the file", async () => {
    const path = await plainFile("sha256");
    const config = await new ConfigFile(path, {}, logger).load();
    expect(config.source).toBe(path);
    expect(config.deployments.get("shop")?.policyText).toBe("report_style: sha256\n");
  });

  it("throws a ConfigError naming the path when the file is missing", async () => {
    const path = join(dir, "absent.yaml");
    await expect(new ConfigFile(path, {}, logger).load()).rejects.toThrow(
      new ConfigError([{ file: path, message: "cannot read the config file: no such file" }]),
    );
  });

  it("picks up an in-place write", async () => {
    const path = await plainFile();
    await watching(path);
    await writeFile(path, configText("sha256"));
    expect(reportStyleOf(await reloads.waitFor(1))).toBe("sha256");
  });

  it("picks up an editor's write to a temp file renamed over the config", async () => {
    const path = await plainFile();
    await watching(path);
    const temp = join(dir, ".config.yaml.swp");
    await writeFile(temp, configText("partial_sha256"));
    await rename(temp, path);
    expect(reportStyleOf(await reloads.waitFor(1))).toBe("partial_sha256");
  });

  it("reports a deleted file as an error and recovers when it is recreated", async () => {
    const path = await plainFile();
    await watching(path);
    await unlink(path);
    const failure = await reloads.waitFor(1);
    expect("error" in failure && failure.error).toEqual(
      new ConfigError([{ file: path, message: "cannot read the config file: no such file" }]),
    );
    // The same text as before the delete: the agent must still hear that the file is back.
    await writeFile(path, configText("raw"));
    expect(reportStyleOf(await reloads.waitFor(2))).toBe("raw");
  });

  it("picks up a Kubernetes ConfigMap update (the kubelet's ..data symlink swap)", async () => {
    // The layout the kubelet mounts: config.yaml -> ..data/config.yaml, ..data -> ..<timestamp>
    const first = join(dir, "..2026_12_03_10_00_00.000000001");
    await mkdir(first);
    await writeFile(join(first, "config.yaml"), configText("raw"));
    await symlink("..2026_12_03_10_00_00.000000001", join(dir, "..data"));
    await symlink("..data/config.yaml", join(dir, "config.yaml"));
    await watching(join(dir, "config.yaml"));

    // An update: a new timestamped dir, a temp symlink renamed over ..data, the old dir removed.
    const swap = async (timestamp: string, previous: string, style: string) => {
      await mkdir(join(dir, timestamp));
      await writeFile(join(dir, timestamp, "config.yaml"), configText(style));
      await symlink(timestamp, join(dir, "..data_tmp"));
      await rename(join(dir, "..data_tmp"), join(dir, "..data"));
      await rm(join(dir, previous), { recursive: true });
    };
    await swap("..2026_12_03_10_05_00.000000002", "..2026_12_03_10_00_00.000000001", "sha256");
    expect(reportStyleOf(await reloads.waitFor(1))).toBe("sha256");
    await swap("..2026_12_03_10_10_00.000000003", "..2026_12_03_10_05_00.000000002", "none");
    expect(reportStyleOf(await reloads.waitFor(2))).toBe("none");
    await sleep(DEBOUNCE_MS * 4);
    expect(reloads.seen).toHaveLength(2);
  });

  it("debounces a burst of writes into one reload of the final content", async () => {
    const path = await plainFile();
    await watching(path);
    for (const style of ["sha256", "none", "partial_sha256", "sha256", "none"]) {
      await writeFile(path, configText(style));
      await sleep(DEBOUNCE_MS / 6);
    }
    expect(reportStyleOf(await reloads.waitFor(1))).toBe("none");
    await sleep(DEBOUNCE_MS * 4);
    expect(reloads.seen).toHaveLength(1);
  });

  it("reports nothing when the content did not change", async () => {
    const path = await plainFile();
    await watching(path);
    await writeFile(path, configText("raw"));
    await utimes(path, new Date(), new Date());
    await sleep(DEBOUNCE_MS * 5);
    expect(reloads.seen).toEqual([]);
  });

  it("reports an invalid change as an error and recovers on the next valid write", async () => {
    const path = await plainFile();
    await watching(path);
    await writeFile(path, "policies:\n  shop:\n    report_style: loud\n");
    const failure = await reloads.waitFor(1);
    expect("error" in failure && failure.error).toEqual(
      new ConfigError([
        {
          file: path,
          line: 3,
          column: 19,
          path: "policies.shop.report_style",
          message: "must be one of: raw, partial_sha256, sha256, none",
        },
      ]),
    );
    await writeFile(path, configText("sha256"));
    expect(reportStyleOf(await reloads.waitFor(2))).toBe("sha256");
  });

  it("re-reads and reports on reload() even when nothing changed (SIGHUP)", async () => {
    const path = await plainFile("sha256");
    const watched = await watching(path);
    await watched.reload();
    expect(reloads.seen).toHaveLength(1);
    expect(reportStyleOf(await reloads.waitFor(1))).toBe("sha256");
  });

  it("logs unknown keys as warnings on every successful read", async () => {
    const path = await plainFile();
    await watching(path);
    await writeFile(path, `${configText("raw")}    next_year_feature: 1\n`);
    await reloads.waitFor(1);
    expect(logger.lines).toEqual([`warn ${path}:4:5: policies.shop.next_year_feature: warning: unknown key`]);
  });

  it("stops watching on stop(), which is safe without start and twice", async () => {
    const path = await plainFile();
    await new ConfigFile(path, {}, logger).stop();
    const watched = await watching(path);
    await watched.stop();
    await watched.stop();
    await writeFile(path, configText("sha256"));
    await sleep(DEBOUNCE_MS * 4);
    expect(reloads.seen).toEqual([]);
  });

  it("fails to start when the config directory does not exist", async () => {
    const missing = new ConfigFile(join(dir, "nowhere", "config.yaml"), {}, logger);
    await expect(missing.start(reloads.record)).rejects.toThrow(/cannot watch/);
  });
});
