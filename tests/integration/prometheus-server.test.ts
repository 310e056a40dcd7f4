import { request } from "node:http";
import { Counter, Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { negotiateFormat } from "../../src/adapters/prometheus/exposition";
import { MetricsServer } from "../../src/adapters/prometheus/metrics-server";
import { collectingLogger, OPENMETRICS_ACCEPT, scrape } from "./prometheus-support";

const started: MetricsServer[] = [];

async function startServer(registry = new Registry()): Promise<{ server: MetricsServer; port: number }> {
  const server = new MetricsServer({ host: "127.0.0.1", port: 0 }, registry, collectingLogger());
  started.push(server);
  await server.start();
  const port = server.address?.port;
  if (!port) throw new Error("no bound port after start");
  return { server, port };
}

afterEach(async () => {
  await Promise.all(started.splice(0).map((server) => server.stop()));
});

describe("MetricsServer", () => {
  it("binds port 0 to a free port and reports it", async () => {
    const { server, port } = await startServer();
    expect(port).toBeGreaterThan(0);
    expect(server.address).toEqual({ host: "127.0.0.1", port });
    expect((await scrape(port)).status).toBe(200);
  });

  it("answers 404 outside /metrics and 405 for other methods", async () => {
    const { port } = await startServer();
    for (const path of ["/", "/metric", "/metrics/", "/metrics/x", "/proxy/leaksignal.wasm"]) {
      expect((await scrape(port, path)).status, path).toBe(404);
    }
    expect((await scrape(port, "/metrics?name[]=up")).status).toBe(200);
    const post = await scrape(port, "/metrics", { method: "POST", body: "x" });
    expect(post.status).toBe(405);
  });

  it("answers HEAD without a body", async () => {
    const { port } = await startServer();
    const head = await fetch(`http://127.0.0.1:${port}/metrics`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(Number(head.headers.get("content-length"))).toBeGreaterThan(0);
    expect(await head.text()).toBe("");
  });

  it("serves what the registry holds", async () => {
    const registry = new Registry();
    const counter = new Counter({ name: "probe_total", help: "probe", registers: [registry] });
    counter.inc(3);
    const { port } = await startServer(registry);
    expect((await scrape(port)).body).toContain("probe_total 3\n");
    const openMetrics = await scrape(port, "/metrics", { headers: { accept: OPENMETRICS_ACCEPT } });
    expect(openMetrics.body).toBe("# HELP probe probe\n# TYPE probe counter\nprobe_total 3\n# EOF\n");
  });

  it("fails start with the address when the port is taken, and stays stoppable", async () => {
    const { port } = await startServer();
    const second = new MetricsServer({ host: "127.0.0.1", port }, new Registry(), collectingLogger());
    await expect(second.start()).rejects.toThrow(`127.0.0.1:${port}`);
    expect(second.address).toBeUndefined();
    await second.stop();
  });

  it("stops without start, twice, and with a scraper's connection still open", async () => {
    await new MetricsServer({ host: "127.0.0.1", port: 0 }, new Registry(), collectingLogger()).stop();

    const { server, port } = await startServer();
    // A kept-alive connection, as Prometheus holds between scrapes.
    await new Promise<void>((resolve, reject) => {
      const req = request({
        host: "127.0.0.1",
        port,
        path: "/metrics",
        agent: false,
        headers: { connection: "keep-alive" },
      });
      req.on("response", (response) => {
        response.resume();
        response.on("end", resolve);
      });
      req.on("error", reject);
      req.end();
    });
    await server.stop();
    await server.stop();
    expect(server.address).toBeUndefined();
    await expect(fetch(`http://127.0.0.1:${port}/metrics`)).rejects.toThrow();
  });

  it("survives a malformed request", async () => {
    const { port } = await startServer();
    const { connect } = await import("node:net");
    await new Promise<void>((resolve) => {
      const socket = connect(port, "127.0.0.1", () => socket.end("NOT HTTP\r\n\r\n"));
      socket.on("error", () => resolve());
      socket.on("close", () => resolve());
      socket.resume();
    });
    expect((await scrape(port)).status).toBe(200);
  });
});

describe("negotiateFormat", () => {
  it("picks OpenMetrics when the scraper ranks it first, as Prometheus does", () => {
    expect(negotiateFormat(OPENMETRICS_ACCEPT)).toBe("openmetrics");
    expect(
      negotiateFormat(
        "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
      ),
    ).toBe("openmetrics");
    expect(negotiateFormat("Application/OpenMetrics-Text")).toBe("openmetrics");
  });

  it("keeps the text format otherwise", () => {
    expect(negotiateFormat(undefined)).toBe("prometheus");
    expect(negotiateFormat("")).toBe("prometheus");
    expect(negotiateFormat("*/*")).toBe("prometheus");
    expect(negotiateFormat("text/plain;version=0.0.4")).toBe("prometheus");
    expect(negotiateFormat("text/html,application/xhtml+xml,*/*;q=0.8")).toBe("prometheus");
    expect(negotiateFormat("text/plain,application/openmetrics-text;q=0.5")).toBe("prometheus");
    expect(negotiateFormat("application/openmetrics-text;q=0")).toBe("prometheus");
  });
});
