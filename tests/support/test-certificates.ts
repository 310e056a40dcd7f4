import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

// Certificates made at test time with the openssl command line (Debian package `openssl`, installed by
// scripts/install-test-deps.sh): a CA, server certificates for localhost/127.0.0.1, client certificates,
// and a second, untrusted CA.

/** Why TLS tests cannot run here, or undefined when they can. */
export const opensslMissing: string | undefined = (() => {
  const probe = spawnSync("openssl", ["version"], { encoding: "utf8" });
  return probe.status === 0 ? undefined : "the openssl command is missing (Debian package openssl)";
})();

export interface Issued {
  readonly certPath: string;
  readonly keyPath: string;
  readonly cert: Buffer;
  readonly key: Buffer;
}

export class TestCertificates {
  readonly dir = mkdtempSync(join(tmpdir(), "leakagent-certs-"));

  /** A self-signed CA. */
  authority(name: string): Issued {
    const keyPath = join(this.dir, `${name}.key`);
    const certPath = join(this.dir, `${name}.crt`);
    openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", keyPath]);
    openssl(["req", "-x509", "-new", "-key", keyPath, "-out", certPath, "-days", "2", "-subj", `/CN=${name}`]);
    return read(certPath, keyPath);
  }

  /** A certificate signed by `ca`: for the server (SAN localhost and 127.0.0.1) or for a client. */
  issue(name: string, ca: Issued, use: "server" | "client", serial: number): Issued {
    const keyPath = join(this.dir, `${name}.key`);
    const certPath = join(this.dir, `${name}.crt`);
    const csrPath = join(this.dir, `${name}.csr`);
    const extPath = join(this.dir, `${name}.ext`);
    writeFileSync(
      extPath,
      use === "server"
        ? "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
        : "extendedKeyUsage=clientAuth\n",
    );
    openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", keyPath]);
    openssl(["req", "-new", "-key", keyPath, "-out", csrPath, "-subj", `/CN=${name}`]);
    openssl([
      "x509",
      "-req",
      "-in",
      csrPath,
      "-CA",
      ca.certPath,
      "-CAkey",
      ca.keyPath,
      "-set_serial",
      String(serial),
      "-days",
      "2",
      "-extfile",
      extPath,
      "-out",
      certPath,
    ]);
    return read(certPath, keyPath);
  }
}

function openssl(args: string[]): void {
  execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
}

function read(certPath: string, keyPath: string): Issued {
  return { certPath, keyPath, cert: readFileSync(certPath), key: readFileSync(keyPath) };
}
