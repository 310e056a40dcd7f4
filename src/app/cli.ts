#!/usr/bin/env node
import { AGENT_VERSION } from "./version";

const USAGE = `Usage:
  leakagent                            run the agent (configured by LS_* environment variables)
  leakagent validate [--strict] <file> check a config file exactly as the agent would
  leakagent --version`;

/** `leakagent validate`: prints every problem as file:line:column: path: message; exit 0 only when there are no errors. */
async function validate(args: string[]): Promise<number> {
  const strict = args.includes("--strict");
  const files = args.filter((arg) => arg !== "--strict");
  if (files.length !== 1 || files[0]?.startsWith("-")) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  const file = files[0] as string;
  // Loaded on demand, like the agent below: `validate` in a pre-commit hook should not pay for the servers.
  const { validateConfigFile } = require("../adapters/config-file") as typeof import("../adapters/config-file");
  const { ok, lines } = await validateConfigFile(file, { strict, bundleDir: process.env.LS_BUNDLE_DIR || undefined });
  for (const line of lines) process.stdout.write(`${line}\n`);
  process.stdout.write(ok ? `${file}: valid\n` : `${file}: invalid\n`);
  return ok ? 0 : 1;
}

async function cli(args: string[]): Promise<void> {
  const [command, ...rest] = args;
  if (command === undefined) return (require("./main") as typeof import("./main")).runAgent(process.env);
  if (command === "validate") {
    process.exitCode = await validate(rest);
    return;
  }
  if (command === "--version" || command === "version") {
    process.stdout.write(`leakagent ${AGENT_VERSION}\n`);
    return;
  }
  process.stderr.write(
    `${command === "--help" || command === "help" ? "" : `unknown command "${command}"\n`}${USAGE}\n`,
  );
  process.exitCode = command === "--help" || command === "help" ? 0 : 2;
}

void cli(process.argv.slice(2));
