import {
  CORE_SCHEMA,
  EVENT_ID,
  type Event,
  eventsToAst,
  NOT_RESOLVED,
  type Node,
  parseEvents,
  present,
  SCALAR_STYLE,
  YAMLException,
} from "js-yaml";

/** A place in a document, 1-based. */
export interface SourceSpan {
  readonly line: number;
  readonly column: number;
}

/** A step into a document: a mapping key or a sequence index. */
export type PathSegment = string | number;

/** A problem found while reading YAML, before the file name is attached. */
export interface YamlProblem {
  readonly span?: SourceSpan | undefined;
  readonly path?: readonly PathSegment[] | undefined;
  readonly message: string;
}

interface Located {
  readonly span: SourceSpan;
  /** Where the entry starts: the key of a mapping entry, the `-` column of a sequence item. */
  readonly key?: SourceSpan | undefined;
  readonly ast: Node;
  readonly path: readonly PathSegment[];
}

/**
 * A YAML document read for validation: its plain value, where each node sits, and its syntax tree for
 * re-serialising parts of it unchanged (tags, quoting and order kept, comments dropped).
 *
 * In the plain value a node with a custom tag, `!name value`, reads as `{ name: value }`: the proxy's policy
 * parser (serde) reads such a tag as the enum variant `name`, so one JSON Schema covers both spellings.
 */
export class YamlDocument {
  constructor(
    readonly value: unknown,
    private readonly nodes: ReadonlyMap<string, Located>,
    private readonly aliasTargets: ReadonlyMap<Node, Node>,
  ) {}

  /** Where the node at a JSON pointer (ajv's instancePath) sits, or its nearest located ancestor. */
  locate(pointer: string): Located | undefined {
    for (let current = pointer; ; current = current.slice(0, current.lastIndexOf("/"))) {
      const found = this.nodes.get(current);
      if (found || current === "") return found;
    }
  }

  /** The position of an entry's key (or of the node when it has none). */
  keySpan(pointer: string): SourceSpan | undefined {
    const exact = this.nodes.get(pointer);
    if (exact) return exact.key ?? exact.span;
    return this.locate(pointer)?.span;
  }

  /** The node at `path` as a YAML document of its own; aliases are expanded so the text stands alone. */
  textAt(path: readonly PathSegment[]): string | undefined {
    const located = this.nodes.get(pointerOf(path));
    if (!located) return undefined;
    const budget = { nodes: MAX_EXPANDED_NODES };
    const contents = this.expand(located.ast, budget);
    return present([{ contents, directives: [], explicitStart: false, explicitEnd: false }], {
      schema: CORE_SCHEMA,
      lineWidth: -1,
    });
  }

  private expand(node: Node, budget: { nodes: number }): Node {
    budget.nodes -= 1;
    if (budget.nodes < 0) throw new AliasExpansionError();
    switch (node.kind) {
      case "alias": {
        const target = this.aliasTargets.get(node);
        if (!target) throw new AliasExpansionError();
        return this.expand(target, budget);
      }
      case "scalar": {
        const { anchor: _anchor, ...rest } = node;
        return rest;
      }
      case "sequence": {
        const { anchor: _anchor, ...rest } = node;
        return { ...rest, items: node.items.map((item) => this.expand(item, budget)) };
      }
      case "mapping": {
        const { anchor: _anchor, ...rest } = node;
        return {
          ...rest,
          items: node.items.map(({ key, value }) => ({
            key: this.expand(key, budget),
            value: this.expand(value, budget),
          })),
        };
      }
    }
  }
}

/** Guards re-serialisation against alias bombs ("billion laughs"). */
const MAX_EXPANDED_NODES = 1_000_000;

export class AliasExpansionError extends Error {
  constructor() {
    super(`aliases expand to more than ${MAX_EXPANDED_NODES} nodes`);
  }
}

/** Reads one YAML document. A syntax error yields no document; other problems (duplicate keys...) come with it. */
export function readYamlDocument(text: string): { document?: YamlDocument; problems: YamlProblem[] } {
  const lines = new LineIndex(text);
  let events: Event[];
  try {
    events = parseEvents(text, {});
  } catch (error) {
    return { problems: [syntaxProblem(text, error)] };
  }
  const documents = eventsToAst(events, { source: text, schema: CORE_SCHEMA });
  const first = documents[0];
  if (!first || first.contents === null) return { problems: [{ message: "the file is empty" }] };
  const nodeEvents = events.filter((event) => event.type !== EVENT_ID.DOCUMENT && event.type !== EVENT_ID.POP);
  const builder = new PlainBuilder(nodeEvents, lines);
  const value = builder.build(first.contents);
  const problems = builder.problems;
  if (documents.length > 1) {
    const second = nodeEvents[builder.consumed];
    problems.push({
      span: second ? lines.spanOf(eventStart(second)) : undefined,
      message: "the file must hold a single YAML document, found another one here",
    });
  }
  return { document: new YamlDocument(value, builder.nodes, builder.aliasTargets), problems };
}

/** JSON pointer of a path, escaped as ajv escapes instancePath. */
export function pointerOf(path: readonly PathSegment[]): string {
  return path.map((segment) => `/${String(segment).replace(/~/g, "~0").replace(/\//g, "~1")}`).join("");
}

/** `policies.example.endpoints[0].config`; keys that are not simple words are quoted: `policies[""]`. */
export function displayPath(path: readonly PathSegment[]): string {
  let out = "";
  for (const segment of path) {
    if (typeof segment === "number") out += `[${segment}]`;
    else if (/^[\w:*/+-]+$/.test(segment)) out += out === "" ? segment : `.${segment}`;
    else out += `[${JSON.stringify(segment)}]`;
  }
  return out;
}

/** Walks js-yaml's syntax tree alongside the parser events (same pre-order) to learn each node's position. */
class PlainBuilder {
  readonly nodes = new Map<string, Located>();
  readonly aliasTargets = new Map<Node, Node>();
  readonly problems: YamlProblem[] = [];
  consumed = 0;
  private readonly anchors = new Map<string, { value: unknown; ast: Node }>();

  constructor(
    private readonly events: readonly Event[],
    private readonly lines: LineIndex,
  ) {}

  build(root: Node): unknown {
    return this.node(root, [], undefined);
  }

  private node(ast: Node, path: PathSegment[], key: SourceSpan | undefined): unknown {
    const event = this.events[this.consumed++];
    if (!event) throw new Error("YAML events and syntax tree disagree");
    const start = eventStart(event);
    const span = start >= 0 ? this.lines.spanOf(start) : (key ?? { line: 1, column: 1 });
    this.nodes.set(pointerOf(path), { span, key, ast, path });

    if (ast.kind === "alias") {
      const target = this.anchors.get(ast.anchor);
      if (!target) {
        this.problems.push({ span, path, message: `unknown alias *${ast.anchor}` });
        return null;
      }
      this.aliasTargets.set(ast, target.ast);
      return target.value;
    }

    const tag = customTag(ast);
    // A custom tag wraps the node's value one level down, as `{ name: value }`.
    let innerPath = path;
    let innerSpan = span;
    if (tag !== undefined) {
      innerPath = [...path, tag];
      const valueStart = event.type === EVENT_ID.SCALAR ? event.valueStart : "start" in event ? event.start : -1;
      if (valueStart >= 0) innerSpan = this.lines.spanOf(valueStart);
      this.nodes.set(pointerOf(innerPath), { span: innerSpan, key: span, ast, path: innerPath });
    }

    let value: unknown;
    if (ast.kind === "scalar") value = this.scalar(ast.tag, ast.value, tag !== undefined, ast.style, span, path);
    else if (ast.kind === "sequence") {
      value = ast.items.map((item, index) => {
        // An item's entry starts at its `-`: on the item's line, at the sequence's column.
        const next = this.events[this.consumed];
        const start = next ? eventStart(next) : -1;
        const line = start >= 0 ? this.lines.spanOf(start).line : innerSpan.line;
        return this.node(item, [...innerPath, index], { line, column: innerSpan.column });
      });
    } else value = this.mapping(ast.items, innerPath);

    if (tag !== undefined) value = { [tag]: value };
    if (ast.anchor !== undefined) this.anchors.set(ast.anchor, { value, ast });
    return value;
  }

  private scalar(
    tag: string,
    text: string,
    custom: boolean,
    style: number,
    span: SourceSpan,
    path: readonly PathSegment[],
  ): unknown {
    if (custom) {
      // The proxy reads a plain scalar as whatever its field needs; quoted ones are always text.
      return style === SCALAR_STYLE.PLAIN ? CORE_SCHEMA.resolveImplicitScalarTag(text).value : text;
    }
    const full = expandTag(tag);
    if (full === "!" || full === undefined) return text;
    const definition = CORE_SCHEMA.lookupScalarTag(full);
    if (!definition) return text;
    const value = definition.resolve(text, tag.startsWith("!"), full);
    if (value === NOT_RESOLVED) {
      this.problems.push({ span, path, message: `cannot read ${JSON.stringify(text)} as ${tag}` });
      return text;
    }
    return value;
  }

  private mapping(items: ReadonlyArray<{ key: Node; value: Node }>, path: PathSegment[]): Record<string, unknown> {
    const result: Record<string, unknown> = {};
    const seen = new Map<string, SourceSpan>();
    for (const item of items) {
      const keyEvent = this.events[this.consumed];
      const keySpan = keyEvent && eventStart(keyEvent) >= 0 ? this.lines.spanOf(eventStart(keyEvent)) : undefined;
      const keyValue = this.node(item.key, [...path, "\u0000key"], undefined);
      this.nodes.delete(pointerOf([...path, "\u0000key"]));
      if (keyValue !== null && typeof keyValue === "object") {
        this.problems.push({ span: keySpan, path, message: "a mapping key must be a scalar" });
        this.node(item.value, [...path, "\u0000value"], keySpan);
        continue;
      }
      const key = String(keyValue);
      const first = seen.get(key);
      if (first) {
        this.problems.push({
          span: keySpan,
          path: [...path, key],
          message: `duplicate key ${JSON.stringify(key)}, first defined at line ${first.line}`,
        });
        // Walk the duplicate's value to stay aligned with the events, but keep the first definition.
        this.node(item.value, [...path, "\u0000duplicate"], keySpan);
        continue;
      }
      if (keySpan) seen.set(key, keySpan);
      const value = this.node(item.value, [...path, key], keySpan);
      // defineProperty: a key named `__proto__` must stay data.
      Object.defineProperty(result, key, { value, enumerable: true, writable: true, configurable: true });
    }
    return result;
  }
}

const CORE_PREFIX = "tag:yaml.org,2002:";

/** The name of a custom (application) tag, like `env` for `!env`; undefined for YAML's own tags. */
function customTag(node: Node): string | undefined {
  if (node.kind === "alias" || !node.tagged) return undefined;
  const full = expandTag(node.tag);
  if (full === "!" || full === undefined) return undefined;
  if (full.startsWith(CORE_PREFIX)) {
    const kind = node.kind === "scalar" ? CORE_SCHEMA.lookupScalarTag(full) : undefined;
    if (kind || full === `${CORE_PREFIX}seq` || full === `${CORE_PREFIX}map`) return undefined;
    return full;
  }
  return full.startsWith("!") ? full.slice(1) : full;
}

/** `!!str` and `!<tag:yaml.org,2002:str>` to `tag:yaml.org,2002:str`; local tags stay as written. */
function expandTag(tag: string): string | undefined {
  if (tag.startsWith("!!")) return CORE_PREFIX + tag.slice(2);
  if (tag.startsWith("!<") && tag.endsWith(">")) return tag.slice(2, -1);
  return tag;
}

/** Offset where a node's text begins, including its tag and anchor. */
function eventStart(event: Event): number {
  switch (event.type) {
    case EVENT_ID.ALIAS:
      return event.anchorStart - 1;
    case EVENT_ID.SCALAR: {
      // Quoted values start at their opening quote.
      const quoted = event.style === SCALAR_STYLE.SINGLE_QUOTED || event.style === SCALAR_STYLE.DOUBLE_QUOTED;
      return firstOffset(event.tagStart, event.anchorStart - 1, event.valueStart - (quoted ? 1 : 0));
    }
    case EVENT_ID.SEQUENCE:
    case EVENT_ID.MAPPING:
      return firstOffset(event.tagStart, event.anchorStart - 1, event.start);
    default:
      return -1;
  }
}

function firstOffset(...offsets: number[]): number {
  const present = offsets.filter((offset) => offset >= 0);
  return present.length ? Math.min(...present) : -1;
}

/** A syntax error, located where the parser stopped, with the path of the entry it was reading when known. */
function syntaxProblem(text: string, error: unknown): YamlProblem {
  if (!(error instanceof YAMLException)) return { message: error instanceof Error ? error.message : String(error) };
  const mark = error.mark;
  if (!mark) return { message: error.reason };
  const span = { line: mark.line + 1, column: mark.column + 1 };
  return { span, path: enclosingPath(text, span), message: error.reason };
}

/**
 * Best effort: re-read the lines before the error and take the deepest entry of the last node read whose
 * key sits left of the error column, which for block YAML is the entry the broken line belongs to.
 */
function enclosingPath(text: string, at: SourceSpan): PathSegment[] | undefined {
  const lines = new LineIndex(text);
  const before = text.slice(0, lines.offsetOfLine(at.line));
  let events: Event[];
  try {
    events = parseEvents(before, {});
  } catch {
    return undefined;
  }
  const root = eventsToAst(events, { source: before, schema: CORE_SCHEMA })[0]?.contents;
  if (!root) return undefined;
  const builder = new PlainBuilder(
    events.filter((event) => event.type !== EVENT_ID.DOCUMENT && event.type !== EVENT_ID.POP),
    lines,
  );
  builder.build(root);
  const last = [...builder.nodes.values()].at(-1);
  if (!last) return undefined;
  for (let depth = last.path.length; depth > 0; depth--) {
    const entry = builder.nodes.get(pointerOf(last.path.slice(0, depth)));
    if (entry?.key && entry.key.column < at.column) return [...entry.path];
  }
  return undefined;
}

class LineIndex {
  private readonly starts: number[] = [0];

  constructor(text: string) {
    for (let i = text.indexOf("\n"); i !== -1; i = text.indexOf("\n", i + 1)) this.starts.push(i + 1);
  }

  spanOf(offset: number): SourceSpan {
    let low = 0;
    let high = this.starts.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >> 1;
      if ((this.starts[middle] ?? 0) <= offset) low = middle;
      else high = middle - 1;
    }
    return { line: low + 1, column: offset - (this.starts[low] ?? 0) + 1 };
  }

  offsetOfLine(line: number): number {
    return this.starts[line - 1] ?? this.starts.at(-1) ?? 0;
  }
}
