import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentProcess } from "../support/agent-process";

const ROOT = resolve(__dirname, "../..");
const CLI = join(ROOT, "dist/app/cli.js");
const FIXTURES = join(ROOT, "tests/fixtures/config");
const { version } = require("../../package.json") as { version: string };

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end; a non-zero exit is a result, not an error. */
function run(command: string, args: string[]): Promise<Run> {
  return new Promise((done, fail) => {
    execFile(command, args, { cwd: ROOT, timeout: 30_000 }, (error, stdout, stderr) => {
      const code = error ? (error as { code?: unknown }).code : 0;
      if (typeof code !== "number") fail(error);
      else done({ code, stdout, stderr });
    });
  });
}

const validate = (...args: string[]) => run(process.execPath, [CLI, "validate", ...args]);
const lines = (text: string) => text.split("\n").filter((line) => line !== "");

// Each case is its own process: run them side by side.
describe.concurrent("leakagent validate (node dist/app/cli.js)", () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "leakagent-validate-"));
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it.each(["good/shop-policy.yaml", "good/tagged-policies.yaml"])(
    "exits 0 on %s and says it is valid, also when strict",
    async (name) => {
      const file = join(FIXTURES, name);
      for (const args of [[file], ["--strict", file]]) {
        const result = await validate(...args);
        expect(result).toEqual({ code: 0, stdout: `${file}: valid\n`, stderr: "" });
      }
    },
  );

  it("exits 1 on a syntax error, printing file:line:column", async () => {
    const file = join(dir, "syntax.yaml");
    // Line 3 is indented one space less than its sibling: `report_style` starts at column 4.
    await writeFile(file, "policies:\n  shop:\n    categories: {}\n   report_style: raw\n");
    const result = await validate(file);
    expect(result.code).toBe(1);
    expect(lines(result.stdout)).toEqual([
      `${file}:4:4: policies.shop: bad indentation of a mapping entry`,
      `${file}: invalid`,
    ]);
  });

  it.each(["duplicate-key.yaml", "empty-deployment-name.yaml", "schema-errors.yaml", "syntax-error.yaml"])(
    "exits 1 on %s with every problem located at file:line:column",
    async (name) => {
      const file = join(FIXTURES, "bad", name);
      const result = await validate(file);
      expect(result.code).toBe(1);
      const output = lines(result.stdout);
      expect(output.at(-1)).toBe(`${file}: invalid`);
      const problems = output.slice(0, -1);
      expect(problems.length).toBeGreaterThan(0);
      for (const problem of problems) expect(problem.startsWith(file)).toBe(true);
      for (const problem of problems) expect(problem.slice(file.length)).toMatch(/^:\d+:\d+: \S.*: \S/);
    },
  );

  it("passes unknown keys with warnings, and fails them with --strict wherever it is given", async () => {
    const file = join(FIXTURES, "bad/unknown-keys.yaml");
    const lenient = await validate(file);
    expect(lenient.code).toBe(0);
    const warnings = lines(lenient.stdout).slice(0, -1);
    expect(warnings).toHaveLength(3);
    expect(warnings[0]).toBe(
      `${file}:3:5: policies.example.catgories: warning: unknown key (did you mean "categories"?)`,
    );
    expect(lines(lenient.stdout).at(-1)).toBe(`${file}: valid`);

    for (const args of [
      ["--strict", file],
      [file, "--strict"],
    ]) {
      const strict = await validate(...args);
      expect(strict.code).toBe(1);
      expect(lines(strict.stdout)).toEqual([
        ...warnings.map((line) => line.replace("warning: ", "")),
        `${file}: invalid`,
      ]);
    }
  });

  it("exits 1 on a missing file, naming it", async () => {
    const file = join(dir, "missing.yaml");
    const result = await validate(file);
    expect(result.code).toBe(1);
    expect(lines(result.stdout)).toEqual([`${file}: cannot read the config file: no such file`, `${file}: invalid`]);
  });

  it("exits 2 with the usage on a wrong command line", async () => {
    for (const args of [[], ["a.yaml", "b.yaml"], ["--verbose", "a.yaml"]]) {
      const result = await validate(...args);
      expect(result.code).toBe(2);
      expect(result.stdout).toBe("");
      expect(result.stderr).toContain("leakagent validate [--strict] <file>");
    }
    const unknown = await run(process.execPath, [CLI, "check", "a.yaml"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "check"');
  });

  it("prints what the agent prints when it refuses the same file at start-up", async () => {
    const file = join(FIXTURES, "bad/schema-errors.yaml");
    const checked = await validate(file);
    const agent = AgentProcess.start({ configPath: file });
    expect((await agent.exited).code).toBe(2);
    expect(agent.stderr).toEqual(lines(checked.stdout).slice(0, -1));
  });
});

describe("leakagent through the package bin (npx, from the repo root)", () => {
  // npx itself takes seconds to start on a busy machine: two calls prove the bin entry works,
  // the node-run tests above cover the command's behaviour.
  it("validates a bad file and reports its version", { timeout: 60_000 }, async () => {
    const bad = join(FIXTURES, "bad/syntax-error.yaml");
    const npx = (...args: string[]) => run("npx", ["--no-install", "leakagent", ...args]);
    const failed = await npx("validate", bad);
    expect(failed.code).toBe(1);
    expect(lines(failed.stdout)).toEqual([
      `${bad}:6:8: policies.example.categories.email: bad indentation of a mapping entry`,
      `${bad}: invalid`,
    ]);
    expect(await npx("--version")).toMatchObject({ code: 0, stdout: `leakagent ${version}\n` });
  });
});
