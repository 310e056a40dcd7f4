import type { Logger } from "../../src/ports/logger.port";

export interface Sample {
  readonly name: string;
  /** In the order exposed. */
  readonly labels: readonly (readonly [string, string])[];
  readonly value: number;
}

export interface Exposition {
  /** Family name → declared type, in the order exposed. */
  readonly types: Map<string, string>;
  /** The family each sample was exposed under. */
  readonly samples: readonly (Sample & { readonly family: string })[];
}

/** A strict reader of both text formats: anything it does not understand fails the test. */
export function parseExposition(text: string): Exposition {
  const types = new Map<string, string>();
  const samples: (Sample & { family: string })[] = [];
  let family = "";
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("# HELP ") || line === "# EOF") continue;
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type?.[1] && type[2]) {
      if (types.has(type[1])) throw new Error(`family ${type[1]} declared twice`);
      family = type[1];
      types.set(family, type[2]);
      continue;
    }
    samples.push({ ...parseSample(line), family });
  }
  return { types, samples };
}

function parseSample(line: string): Sample {
  const nameEnd = line.search(/[{ ]/);
  if (nameEnd < 1) throw new Error(`not a sample: ${line}`);
  const name = line.slice(0, nameEnd);
  const labels: [string, string][] = [];
  let i = nameEnd;
  if (line[i] === "{") {
    i++;
    while (line[i] !== "}") {
      const eq = line.indexOf('="', i);
      if (eq < 0) throw new Error(`bad labels: ${line}`);
      const label = line.slice(i, eq);
      let value = "";
      i = eq + 2;
      while (line[i] !== '"') {
        if (i >= line.length) throw new Error(`unterminated label value: ${line}`);
        if (line[i] === "\\") {
          i++;
          value += line[i] === "n" ? "\n" : line[i];
        } else {
          value += line[i];
        }
        i++;
      }
      labels.push([label, value]);
      i++;
      if (line[i] === ",") i++;
    }
    i++;
  }
  if (line[i] !== " ") throw new Error(`no value: ${line}`);
  const text = line.slice(i + 1);
  const value = text === "+Inf" ? Number.POSITIVE_INFINITY : Number(text);
  if (Number.isNaN(value) && text !== "NaN" && text !== "Nan") throw new Error(`bad value: ${line}`);
  return { name, labels, value };
}

/** The value of the one sample with exactly these labels, undefined when there is none. */
export function sampleValue(
  exposition: Exposition,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const wanted = Object.entries(labels);
  const found = exposition.samples.filter(
    (sample) =>
      sample.name === name &&
      sample.labels.length === wanted.length &&
      wanted.every(([label, value]) => sample.labels.some(([l, v]) => l === label && v === value)),
  );
  if (found.length > 1) throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(labels)}`);
  return found[0]?.value;
}

export const OPENMETRICS_ACCEPT =
  "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

export interface Scrape {
  readonly status: number;
  readonly contentType: string;
  readonly body: string;
}

export async function scrape(port: number, path = "/metrics", init: RequestInit = {}): Promise<Scrape> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`, init);
  return {
    status: response.status,
    contentType: response.headers.get("content-type") ?? "",
    body: await response.text(),
  };
}

export interface LoggedLine {
  readonly level: string;
  readonly message: string;
}

export function collectingLogger(): Logger & { readonly lines: LoggedLine[] } {
  const lines: LoggedLine[] = [];
  const log = (level: string) => (message: string) => {
    lines.push({ level, message });
  };
  return { lines, debug: log("debug"), info: log("info"), warn: log("warn"), error: log("error") };
}
