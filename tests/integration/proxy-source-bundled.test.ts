import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rename, rm, symlink, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ProxyRoute } from "../../src/adapters/proxy-source/proxy-route";
import { RecordingTelemetry } from "../support/recording-telemetry";
import { bodyOf, get, isStream, RecordingLogger, sha256 } from "./proxy-source-support";

describe("bundled proxy source", () => {
  let dir: string;
  let bundle: string;
  let wasm: Buffer;
  const secret = Buffer.from("outside the bundle: must never be served\n");
  let telemetry: RecordingTelemetry;
  let logger: RecordingLogger;
  let route: ProxyRoute;

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "leakagent-bundle-"));
    bundle = path.join(dir, "bundle");
    await mkdir(path.join(bundle, "2025_01_29_19_26_57_6243534_0.12.4"), { recursive: true });
    wasm = randomBytes(3 * 1024 * 1024 + 17);
    await writeFile(path.join(bundle, "2025_01_29_19_26_57_6243534_0.12.4", "leaksignal.wasm"), wasm);
    await writeFile(path.join(bundle, "notes.txt"), "hello\n");
    await writeFile(path.join(dir, "secret.txt"), secret);
    await symlink(path.join(dir, "secret.txt"), path.join(bundle, "escape"));
    await symlink(dir, path.join(bundle, "parent"));
    await symlink("2025_01_29_19_26_57_6243534_0.12.4/leaksignal.wasm", path.join(bundle, "leaksignal.wasm"));
    telemetry = new RecordingTelemetry();
    logger = new RecordingLogger();
    route = new ProxyRoute(telemetry, logger);
    route.setSource({ type: "bundled", path: bundle });
  });

  afterEach(async () => {
    await route.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const modulePath = "/proxy/2025_01_29_19_26_57_6243534_0.12.4/leaksignal.wasm";

  it("streams the file with its length, media type and sha256 ETag", async () => {
    const reply = await route.handle(get(modulePath));
    expect(reply.status).toBe(200);
    expect(isStream(reply)).toBe(true);
    expect(reply.headers).toMatchObject({
      "content-type": "application/wasm",
      "content-length": wasm.length,
      etag: `"${sha256(wasm)}"`,
    });
    expect(sha256(await bodyOf(reply))).toBe(sha256(wasm));
    expect(telemetry.pulled).toEqual(["2025_01_29_19_26_57_6243534_0.12.4/leaksignal.wasm"]);
  });

  it("ignores query strings and serves other files as octet-stream", async () => {
    const wasmReply = await route.handle(get(`${modulePath}?version=1&x=%2e%2e`));
    expect(sha256(await bodyOf(wasmReply))).toBe(sha256(wasm));
    const notes = await route.handle(get("/proxy/notes.txt"));
    expect(notes.headers?.["content-type"]).toBe("application/octet-stream");
    expect((await bodyOf(notes)).toString()).toBe("hello\n");
  });

  it("follows a symlink that stays inside the bundle", async () => {
    const reply = await route.handle(get("/proxy/leaksignal.wasm"));
    expect(reply.status).toBe(200);
    expect(sha256(await bodyOf(reply))).toBe(sha256(wasm));
    expect(telemetry.pulled).toEqual(["leaksignal.wasm"]);
  });

  it("answers 304 to a matching If-None-Match, in all its forms", async () => {
    const etag = `"${sha256(wasm)}"`;
    for (const header of [etag, `"other", ${etag}`, "*", `W/${etag}`]) {
      const reply = await route.handle(get(modulePath, { "if-none-match": header }));
      expect(reply.status, header).toBe(304);
      expect(reply.body, header).toBeUndefined();
      expect(reply.headers?.etag).toBe(etag);
    }
    const stale = await route.handle(get(modulePath, { "if-none-match": `"${sha256(Buffer.from("old"))}"` }));
    expect(stale.status).toBe(200);
    expect(sha256(await bodyOf(stale))).toBe(sha256(wasm));
  });

  it("recomputes the ETag when the file changes", async () => {
    const file = path.join(bundle, "notes.txt");
    const first = await route.handle(get("/proxy/notes.txt"));
    await bodyOf(first);
    const changed = Buffer.from("a different bundle\n");
    await writeFile(file, changed);
    const later = new Date(Date.now() + 5_000);
    await utimes(file, later, later);
    const second = await route.handle(get("/proxy/notes.txt"));
    expect(second.headers?.etag).toBe(`"${sha256(changed)}"`);
    expect(await bodyOf(second)).toEqual(changed);
  });

  it("answers HEAD with the headers and no body", async () => {
    const reply = await route.handle(get(modulePath, {}, "HEAD"));
    expect(reply.status).toBe(200);
    expect(reply.body).toBeUndefined();
    expect(reply.headers?.["content-length"]).toBe(wasm.length);
    expect(reply.headers?.etag).toBe(`"${sha256(wasm)}"`);
  });

  it("answers 404 with a short text for missing files and directories", async () => {
    for (const target of ["/proxy/0.0.0/leaksignal.wasm", "/proxy/2025_01_29_19_26_57_6243534_0.12.4", "/proxy/"]) {
      const reply = await route.handle(get(target));
      expect(reply.status, target).toBe(404);
      expect(reply.headers?.["content-type"]).toMatch(/^text\/plain/);
      expect((await bodyOf(reply)).toString()).toMatch(/not found/i);
    }
    expect(telemetry.pulled).toEqual(["not_found", "not_found", "not_found"]);
  });

  it("refuses every path that leads outside the bundle", async () => {
    const absolute = path.join(dir, "secret.txt");
    const attempts = [
      "/proxy/../secret.txt",
      "/proxy/2025_01_29_19_26_57_6243534_0.12.4/../../secret.txt",
      "/proxy/./../secret.txt",
      "/proxy/%2e%2e/secret.txt",
      "/proxy/%2E%2E/secret.txt",
      "/proxy/.%2e/secret.txt",
      "/proxy/%2e%2e%2fsecret.txt",
      "/proxy/..%2Fsecret.txt",
      "/proxy/..%5csecret.txt",
      "/proxy/..\\secret.txt",
      "/proxy/%252e%252e/secret.txt",
      "/proxy/%252e%252e%252fsecret.txt",
      "/proxy/%c0%ae%c0%ae/secret.txt",
      "/proxy/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f..%2f..%2fetc/passwd",
      `/proxy/${absolute}`,
      `/proxy/${encodeURIComponent(absolute)}`,
      "/proxy//etc/passwd",
      "/proxy/notes.txt%00.wasm",
      "/proxy/escape",
      "/proxy/%65scape",
      "/proxy/parent/secret.txt",
      "/proxy/%70arent%2fsecret.txt",
    ];
    for (const attempt of attempts) {
      const reply = await route.handle(get(attempt));
      expect([400, 404], attempt).toContain(reply.status);
      expect((await bodyOf(reply)).includes(secret), attempt).toBe(false);
    }
    expect(new Set(telemetry.pulled)).toEqual(new Set(["invalid"]));
    expect(telemetry.pulled).toHaveLength(attempts.length);
  });

  it("counts garbage under fixed keys only", async () => {
    for (let i = 0; i < 20; i++) await bodyOf(await route.handle(get(`/proxy/missing-${i}.wasm`)));
    await bodyOf(await route.handle(get("/proxy/%zz")));
    await bodyOf(await route.handle(get("/proxy/notes.txt")));
    await bodyOf(await route.handle(get("/proxy/notes.txt", {}, "POST")));
    expect(new Set(telemetry.pulled)).toEqual(new Set(["not_found", "invalid", "notes.txt"]));
  });

  it("answers 404 naming the cause when no proxy source is configured", async () => {
    route.setSource(undefined);
    const reply = await route.handle(get(modulePath));
    expect(reply.status).toBe(404);
    expect((await bodyOf(reply)).toString()).toMatch(/no proxy_source is configured/);
  });

  it("answers 503 and warns once while the bundle directory is missing or not a directory, then serves again", async () => {
    const away = path.join(dir, "away");
    await rename(bundle, away);
    for (let i = 0; i < 3; i++) expect((await route.handle(get(modulePath))).status).toBe(503);
    await writeFile(bundle, "a file where the directory was\n");
    const reply = await route.handle(get(modulePath));
    expect(reply.status).toBe(503);
    expect((await bodyOf(reply)).toString()).toMatch(/bundle directory cannot be read; retry later/);
    expect(logger.at("warn")).toEqual([expect.stringMatching(/bundle directory is missing or unreadable/)]);
    expect(telemetry.pulled).toEqual(["unavailable", "unavailable", "unavailable", "unavailable"]);

    await rm(bundle);
    await rename(away, bundle);
    const back = await route.handle(get(modulePath));
    expect(back.status).toBe(200);
    expect(sha256(await bodyOf(back))).toBe(sha256(wasm));
    expect(logger.at("info")).toEqual([expect.stringMatching(/bundle directory is readable again/)]);
  });

  it("finishes a download already under way when the bundle directory is deleted", async () => {
    const reply = await route.handle(get(modulePath));
    expect(isStream(reply)).toBe(true);
    await rm(bundle, { recursive: true });
    expect(sha256(await bodyOf(reply))).toBe(sha256(wasm));
    expect((await route.handle(get(modulePath))).status).toBe(503);
  });
});
