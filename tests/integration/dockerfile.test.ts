import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { readSettings } from "../../src/app/settings";

// `docker build` cannot run here: the Dockerfile is checked as text against the repository, the build
// output and package.json instead.

const ROOT = resolve(__dirname, "../..");
const DOCKERFILE = readFileSync(join(ROOT, "Dockerfile"), "utf8");
const PACKAGE = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
  scripts: Record<string, string>;
  engines: { node: string };
};

interface Stage {
  name: string | undefined;
  from: string;
  instructions: Array<{ keyword: string; args: string }>;
}

/** The stages of the Dockerfile, with their instructions (comments and continuations handled). */
function stages(): Stage[] {
  const result: Stage[] = [];
  const lines = DOCKERFILE.replace(/\\\n/g, " ")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"));
  for (const line of lines) {
    const [, keyword = "", args = ""] = /^(\w+)\s+(.*)$/.exec(line) ?? [];
    if (keyword.toUpperCase() === "FROM") {
      const [, from = "", name] = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args) ?? [];
      result.push({ name, from, instructions: [] });
    } else {
      result.at(-1)?.instructions.push({ keyword: keyword.toUpperCase(), args });
    }
  }
  return result;
}

const stage = (name: string) => {
  const found = stages().find((s) => s.name === name);
  if (!found) throw new Error(`no stage ${name}`);
  return found;
};
const args = (s: Stage, keyword: string) => s.instructions.filter((i) => i.keyword === keyword).map((i) => i.args);

/** A COPY's sources, without its flags and destination. */
const copySources = (copy: string) =>
  copy
    .split(/\s+/)
    .filter((word) => !word.startsWith("--"))
    .slice(0, -1);

/** Whether .dockerignore keeps `path` out of the build context (the patterns this repository uses). */
function ignored(path: string): boolean {
  const patterns = readFileSync(join(ROOT, ".dockerignore"), "utf8")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"));
  return patterns.some((pattern) => {
    const regex = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, "[^/]*")}(/.*)?$`);
    return regex.test(path);
  });
}

describe("the Dockerfile", () => {
  it("builds in one stage and runs in another, on the Node.js major package.json requires", () => {
    const names = stages().map((s) => s.name);
    expect(names).toEqual(expect.arrayContaining(["build", "runtime", "bundle"]));
    const major = /(\d+)/.exec(PACKAGE.engines.node)?.[1];
    for (const s of stages().filter((s) => s.name === "build" || s.name === "runtime")) {
      expect(s.from, s.name).toMatch(new RegExp(`^node:${major}(-[\\w.-]+)?$`));
    }
    expect(args(stage("build"), "RUN").join(" && ")).toMatch(/npm ci\b.*npm prune --omit=dev/);
    // npm ci runs `prepare`, which builds dist/ (generated code included) from the copied sources.
    expect(PACKAGE.scripts.prepare).toBe("npm run build");
    expect(PACKAGE.scripts.build).toContain("npm run generate");
  });

  it("copies only files that exist and that .dockerignore lets into the context", () => {
    const sources = args(stage("build"), "COPY").flatMap(copySources);
    expect(sources.length).toBeGreaterThan(0);
    for (const source of sources) {
      expect(existsSync(join(ROOT, source)), source).toBe(true);
      expect(ignored(source), `${source} is in .dockerignore`).toBe(false);
    }
    // What the runtime takes from the build stage is what the build produces.
    const fromBuild = args(stage("runtime"), "COPY")
      .filter((copy) => copy.includes("--from=build"))
      .flatMap(copySources)
      .map((source) => source.replace(/^\/app\//, ""));
    expect(fromBuild.sort()).toEqual(["dist", "node_modules", "package.json"]);
    // The generated code is rebuilt in the image, never taken from a developer's tree.
    expect(ignored("src/generated")).toBe(true);
    expect(ignored("dist")).toBe(true);
    expect(ignored("node_modules")).toBe(true);
  });

  it("runs as a non-root user, exposing the agent's default ports", () => {
    const runtime = stage("runtime");
    const user = args(runtime, "USER").at(-1);
    expect(user).toBeDefined();
    expect(user).not.toMatch(/^(root|0)(:|$)/);
    const exposed = args(runtime, "EXPOSE").flatMap((e) => e.split(/\s+/).map(Number));
    const defaults = readSettings({});
    expect(exposed.sort()).toEqual([defaults.ingestionBind.port, defaults.prometheusBind.port].sort());
  });

  it("starts what `npm start` starts, a file the build produces", () => {
    const entrypoint = JSON.parse(args(stage("runtime"), "ENTRYPOINT").at(-1) ?? "[]") as string[];
    expect(entrypoint.join(" ")).toBe(PACKAGE.scripts.start);
    const [command, script = ""] = entrypoint;
    expect(command).toBe("node");
    expect(existsSync(join(ROOT, script.replace(/^dist\//, "src/").replace(/\.js$/, ".ts")))).toBe(true);
  });

  it("has a bundle variant serving the copied directory through LS_BUNDLE_DIR, and the plain image as default", () => {
    const bundle = stage("bundle");
    expect(bundle.from).toBe("runtime");
    const copy = args(bundle, "COPY").find((c) => /\$\{BUNDLE_DIR\}/.test(c));
    const destination = copy?.split(/\s+/).at(-1);
    expect(args(bundle, "ENV")).toContain(`LS_BUNDLE_DIR=${destination}`);
    expect(stages().at(-1)?.from).toBe("runtime");
  });
});
