/** A parsed Prometheus text exposition: sample values and declared types. */
export interface Exposition {
  types: Map<string, string>;
  /** Sample value by `name` or `name{a="x",b="y"}` with labels sorted by name. */
  samples: Map<string, number>;
}

export function parseExposition(text: string): Exposition {
  const types = new Map<string, string>();
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line.startsWith("# TYPE ")) {
      const [name, type] = line.slice(7).split(" ");
      if (name && type) types.set(name, type);
      continue;
    }
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match) throw new Error(`unparseable exposition line: ${line}`);
    const labels = [...(match[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)]
      .map(([, k, v]) => [k as string, v as string] as const)
      .sort(([a], [b]) => a.localeCompare(b));
    samples.set(seriesKey(match[1] as string, Object.fromEntries(labels)), Number(match[3]));
  }
  return { types, samples };
}

/** The key parseExposition uses for a series. */
export function seriesKey(name: string, labels: Record<string, string> = {}): string {
  const pairs = Object.entries(labels)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}="${v}"`);
  return pairs.length ? `${name}{${pairs.join(",")}}` : name;
}
