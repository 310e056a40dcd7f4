import { readFileSync } from "node:fs";
import { join } from "node:path";

/** The agent's version from package.json (src/app and dist/app both sit two levels below it). */
export const AGENT_VERSION: string = (
  JSON.parse(readFileSync(join(__dirname, "..", "..", "package.json"), "utf8")) as {
    version: string;
  }
).version;
