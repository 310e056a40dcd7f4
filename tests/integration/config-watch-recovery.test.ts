import { mkdir, mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConfigFile } from "../../src/adapters/config-file";
import type { ConfigReload } from "../../src/ports/config-source.port";
import { RecordingLogger } from "../support/recording-logger";

// The config's directory deleted (a volume unmounted, `rm -rf` by hand) and made again: the watch on a
// deleted directory goes silent, so the agent must watch an ancestor meanwhile and the new directory after.

const DEBOUNCE_MS = 60;
const configText = (style: string) => `policies:\n  shop:\n    report_style: ${style}\n`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const styleOf = (reload: ConfigReload | undefined) =>
  reload && "config" in reload
    ? reload.config.deployments.get("shop")?.policyText.match(/report_style: (\w+)/)?.[1]
    : `error: ${reload?.error.message}`;

describe("ConfigFile when its directory goes away", () => {
  let dir: string;
  let source: ConfigFile | undefined;
  let logger: RecordingLogger;
  const seen: ConfigReload[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "leakagent-config-dir-"));
    logger = new RecordingLogger();
    seen.length = 0;
  });

  afterEach(async () => {
    await source?.stop();
    source = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  async function watching(path: string): Promise<void> {
    await mkdir(join(path, ".."), { recursive: true });
    await writeFile(path, configText("raw"));
    source = new ConfigFile(path, { debounceMs: DEBOUNCE_MS }, logger);
    await source.load();
    await source.start((reload) => seen.push(reload));
  }

  async function reloadNumber(count: number, timeoutMs = 3000): Promise<ConfigReload | undefined> {
    const deadline = Date.now() + timeoutMs;
    while (seen.length < count && Date.now() < deadline) await sleep(10);
    expect(seen.length, `reload #${count}`).toBeGreaterThanOrEqual(count);
    return seen[count - 1];
  }

  it("reports the file gone, then picks up the directory made again and every change after", async () => {
    const configDir = join(dir, "etc");
    const path = join(configDir, "config.yaml");
    await watching(path);

    await rm(configDir, { recursive: true });
    expect(styleOf(await reloadNumber(1))).toBe(`error: ${path}: cannot read the config file: no such file`);
    expect(logger.at("warn")).toContain("config file watch moved: its directory is gone");

    await mkdir(configDir);
    await writeFile(path, configText("sha256"));
    expect(styleOf(await reloadNumber(2))).toBe("sha256");
    expect(logger.at("warn")).toContain("config file watch moved: its directory is back");

    // The watch is on the new directory now: an edit in place is seen.
    await writeFile(path, configText("none"));
    expect(styleOf(await reloadNumber(3))).toBe("none");
    await sleep(DEBOUNCE_MS * 4);
    expect(seen).toHaveLength(3);
  });

  it("recovers when the directory and its parent are made again in one go (mkdir -p)", async () => {
    const path = join(dir, "a", "b", "config.yaml");
    await watching(path);

    await rm(join(dir, "a"), { recursive: true });
    await reloadNumber(1);
    await mkdir(join(dir, "a", "b"), { recursive: true });
    await writeFile(path, configText("partial_sha256"));
    expect(styleOf(await reloadNumber(2))).toBe("partial_sha256");

    await writeFile(path, configText("sha256"));
    expect(styleOf(await reloadNumber(3))).toBe("sha256");
  });

  it("follows a directory swapped for a new one in one step, with no event in between", async () => {
    const configDir = join(dir, "etc");
    const path = join(configDir, "config.yaml");
    await watching(path);

    const next = join(dir, "etc.next");
    await mkdir(next);
    await writeFile(join(next, "config.yaml"), configText("sha256"));
    await rm(configDir, { recursive: true });
    await rename(next, configDir);
    await expect.poll(() => styleOf(seen.at(-1)), { timeout: 3000 }).toBe("sha256");
    const count = seen.length;

    await writeFile(path, configText("none"));
    expect(styleOf(await reloadNumber(count + 1))).toBe("none");
  });
});
