import { createHash } from "node:crypto";
import { type FSWatcher, readFileSync, watch } from "node:fs";
import { dirname, resolve } from "node:path";
import { createSecureContext, type SecureContextOptions } from "node:tls";
import type { Logger } from "../../ports/logger.port";

/** Where the ingestion port's TLS material lives (PEM files). */
export interface TlsFiles {
  readonly certPath: string;
  readonly keyPath: string;
  /** CA bundle that client certificates must chain to; set, the port asks every client for one (mutual TLS). */
  readonly clientCaPath?: string | undefined;
}

/** Quiet time after the last change before the files are re-read: a renewal writes cert and key one by one. */
const DEBOUNCE_MS = 200;

/**
 * The certificate, key and client CA of the ingestion port, re-read when their files change. The directories
 * are watched, not the files: cert-manager and Kubernetes Secret volumes swap a `..data` symlink, which a
 * watch on the file itself would never see. A set of files that does not load (half-written, wrong key,
 * not PEM) changes nothing: the last good certificate stays in use, and the log says why.
 */
export class TlsCredentials {
  private watchers: FSWatcher[] = [];
  private debounce: NodeJS.Timeout | undefined;
  /** Hash of what was last applied, so events that change nothing apply nothing. */
  private applied = "";

  constructor(
    readonly files: TlsFiles,
    private readonly logger: Logger,
  ) {}

  /** Reads and checks the files now; throws naming the file or the problem. */
  load(): SecureContextOptions {
    const { certPath, keyPath, clientCaPath } = this.files;
    const options: SecureContextOptions = {
      cert: readPem("certificate", certPath),
      key: readPem("private key", keyPath),
      ...(clientCaPath ? { ca: readPem("client CA", clientCaPath) } : {}),
    };
    try {
      createSecureContext(options);
    } catch (error) {
      throw new Error(`the TLS certificate ${certPath} and key ${keyPath} do not load: ${messageOf(error)}`);
    }
    this.applied = fingerprint(options);
    return options;
  }

  /** Watches the files' directories; `apply` gets every new set of files that loads. */
  start(apply: (options: SecureContextOptions) => void): void {
    if (this.watchers.length > 0) return;
    const { certPath, keyPath, clientCaPath } = this.files;
    const directories = new Set([certPath, keyPath, clientCaPath].filter(isSet).map((p) => dirname(resolve(p))));
    for (const directory of directories) {
      try {
        const watcher = watch(directory, () => this.schedule(apply));
        watcher.on("error", (error) =>
          this.logger.error("TLS file watch failed; certificate changes are no longer picked up", {
            directory,
            error: error.message,
          }),
        );
        this.watchers.push(watcher);
      } catch (error) {
        this.stop();
        throw new Error(`cannot watch ${directory} for TLS certificate changes: ${messageOf(error)}`);
      }
    }
  }

  stop(): void {
    clearTimeout(this.debounce);
    this.debounce = undefined;
    for (const watcher of this.watchers) watcher.close();
    this.watchers = [];
  }

  private schedule(apply: (options: SecureContextOptions) => void): void {
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => this.reload(apply), DEBOUNCE_MS);
  }

  private reload(apply: (options: SecureContextOptions) => void): void {
    const before = this.applied;
    let options: SecureContextOptions;
    try {
      options = this.load();
    } catch (error) {
      this.logger.error("TLS certificate reload failed; keeping the last good certificate", {
        error: messageOf(error),
      });
      return;
    }
    if (this.applied === before) return;
    try {
      apply(options);
    } catch (error) {
      this.applied = before;
      this.logger.error("TLS certificate reload failed; keeping the last good certificate", {
        error: messageOf(error),
      });
      return;
    }
    this.logger.info("TLS certificate reloaded", { cert: this.files.certPath });
  }
}

function readPem(what: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new Error(
      `cannot read the TLS ${what} ${path}: ${(error as NodeJS.ErrnoException).code ?? messageOf(error)}`,
    );
  }
}

function fingerprint(options: SecureContextOptions): string {
  const hash = createHash("sha256");
  for (const part of [options.cert, options.key, options.ca]) {
    const bytes = Buffer.isBuffer(part) ? part : Buffer.alloc(0);
    hash.update(`${bytes.length}:`).update(bytes);
  }
  return hash.digest("hex");
}

function isSet(value: string | undefined): value is string {
  return value !== undefined && value !== "";
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
