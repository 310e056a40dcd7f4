import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, realpath, stat } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "../../ports/logger.port";
import type { HttpRequest } from "../ingestion/http-route";
import { contentTypeFor, matchesIfNoneMatch, type ProxyReply, textReply } from "./proxy-request";

interface KnownEtag {
  readonly size: number;
  readonly mtimeMs: number;
  readonly etag: Promise<string>;
}

/** Serves the files below a bundle directory, and nothing outside it. */
export class BundleFiles {
  /** Hashing a large module on every pull would cost more than sending it; keyed by real path. */
  private readonly etags = new Map<string, KnownEtag>();
  private warnedMissingRoot: string | undefined;

  constructor(private readonly logger: Logger) {}

  async serve(root: string, segments: readonly string[], request: HttpRequest): Promise<ProxyReply> {
    // A missing or unreadable directory is the agent's fault, not the request's, and passes (a volume being
    // remounted, an image being replaced): 503, which Envoy retries, rather than a 404 it would believe.
    let realRoot: string;
    try {
      realRoot = await realpath(root);
      if (!(await stat(realRoot)).isDirectory()) throw new Error("not a directory");
    } catch (error) {
      if (this.warnedMissingRoot !== root) {
        this.warnedMissingRoot = root;
        this.logger.warn("proxy bundle directory is missing or unreadable; answering 503 until it is back", {
          path: root,
          reason: describe(error),
        });
      }
      return textReply(
        503,
        "Service unavailable: the proxy bundle directory cannot be read; retry later.",
        "unavailable",
      );
    }
    if (this.warnedMissingRoot === root) {
      this.warnedMissingRoot = undefined;
      this.logger.info("proxy bundle directory is readable again", { path: root });
    }

    let file: string;
    try {
      file = await realpath(path.join(realRoot, ...segments));
    } catch {
      return notFound();
    }
    // Symlinks are resolved above, so this compares where the bytes really are.
    const inside = path.relative(realRoot, file);
    if (inside === "" || inside === ".." || inside.startsWith(`..${path.sep}`) || path.isAbsolute(inside)) {
      this.logger.debug("refused a proxy path resolving outside the bundle directory", { path: segments.join("/") });
      return textReply(404, "Not found.", "invalid");
    }

    let handle: Awaited<ReturnType<typeof open>>;
    try {
      handle = await open(file, "r");
    } catch {
      return notFound();
    }
    try {
      // The length comes from the opened file, so replacing the file now cannot make it disagree with the body.
      const stat = await handle.stat();
      if (!stat.isFile()) {
        await handle.close();
        return notFound();
      }
      const etag = await this.etagOf(file, stat.size, stat.mtimeMs);
      const headers = { "content-type": contentTypeFor(file), "content-length": stat.size, etag };
      if (matchesIfNoneMatch(request.headers["if-none-match"], etag)) {
        await handle.close();
        return { outcome: "served", reply: { status: 304, headers: { etag } } };
      }
      if (request.method === "HEAD") {
        await handle.close();
        return { outcome: "served", reply: { status: 200, headers } };
      }
      // The stream owns the handle from here and closes it on end or destroy.
      return { outcome: "served", reply: { status: 200, headers, body: handle.createReadStream() } };
    } catch (error) {
      await handle.close().catch(() => {});
      throw error;
    }
  }

  private etagOf(file: string, size: number, mtimeMs: number): Promise<string> {
    const known = this.etags.get(file);
    if (known && known.size === size && known.mtimeMs === mtimeMs) return known.etag;
    const etag = sha256Of(file).then((hex) => `"${hex}"`);
    const entry = { size, mtimeMs, etag };
    this.etags.set(file, entry);
    etag.catch(() => {
      if (this.etags.get(file) === entry) this.etags.delete(file);
    });
    return etag;
  }
}

async function sha256Of(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

function notFound(): ProxyReply {
  return textReply(404, "Not found.", "not_found");
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
