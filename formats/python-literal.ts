/**
 * The Python literal subset a .npy header is written in. numpy reads the header dict with ast.literal_eval; this
 * accepts what can appear there (str, int incl. Python 2 'L' suffix, bool, None, tuple, list, dict).
 */

export type PyValue =
  | { kind: 'str'; value: string }
  | { kind: 'int'; value: bigint }
  | { kind: 'bool'; value: boolean }
  | { kind: 'none' }
  | { kind: 'tuple' | 'list'; items: PyValue[] }
  | { kind: 'dict'; entries: Array<[PyValue, PyValue]> };

export class HeaderSyntaxError extends Error {}

export class PyLiteralParser {
  private pos = 0;
  constructor(private readonly text: string) {}

  parseAll(): PyValue {
    const v = this.value(0);
    this.ws();
    if (this.pos !== this.text.length) this.fail('unexpected text after the dict');
    return v;
  }

  private fail(what: string): never {
    throw new HeaderSyntaxError(`${what} at offset ${this.pos}`);
  }

  private ws(): void {
    while (this.pos < this.text.length && ' \t\n\r\f\v'.includes(this.text[this.pos])) this.pos++;
  }

  private value(depth: number): PyValue {
    if (depth > 32) this.fail('nesting too deep');
    this.ws();
    const c = this.text[this.pos];
    if (c === undefined) this.fail('unexpected end of header');
    if (c === '{') return this.dict(depth);
    if (c === '[') return this.seq(depth, ']', 'list');
    if (c === '(') return this.seq(depth, ')', 'tuple');
    if (c === "'" || c === '"') return this.str(c);
    if (c === '-' || c === '+' || (c >= '0' && c <= '9')) return this.int();
    const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(this.text.slice(this.pos, this.pos + 64));
    if (m) {
      this.pos += m[0].length;
      if (m[0] === 'True') return { kind: 'bool', value: true };
      if (m[0] === 'False') return { kind: 'bool', value: false };
      if (m[0] === 'None') return { kind: 'none' };
      this.pos -= m[0].length;
      this.fail(`unexpected name '${m[0]}'`);
    }
    this.fail(`unexpected character ${JSON.stringify(c)}`);
  }

  private int(): PyValue {
    const m = /^[-+]?[0-9]+/.exec(this.text.slice(this.pos, this.pos + 64));
    if (!m) this.fail('malformed number');
    this.pos += m[0].length;
    // Python 2 wrote long ints as "3L"; numpy still accepts them for v1/v2 files.
    if (this.text[this.pos] === 'L' || this.text[this.pos] === 'l') this.pos++;
    if (/[0-9A-Za-z_.]/.test(this.text[this.pos] ?? '')) this.fail('malformed number');
    return { kind: 'int', value: BigInt(m[0]) };
  }

  private str(quote: string): PyValue {
    this.pos++;
    let out = '';
    for (;;) {
      const c = this.text[this.pos++];
      if (c === undefined || c === '\n') this.fail('unterminated string');
      if (c === quote) return { kind: 'str', value: out };
      if (c !== '\\') {
        out += c;
        continue;
      }
      const e = this.text[this.pos++];
      const simple: Record<string, string> = { '\\': '\\', "'": "'", '"': '"', n: '\n', t: '\t', r: '\r', '0': '\0' };
      if (e !== undefined && e in simple) out += simple[e];
      else if (e === 'x' && /^[0-9a-fA-F]{2}$/.test(this.text.slice(this.pos, this.pos + 2))) {
        out += String.fromCharCode(parseInt(this.text.slice(this.pos, this.pos + 2), 16));
        this.pos += 2;
      } else this.fail('unsupported string escape');
    }
  }

  private seq(depth: number, close: string, kind: 'tuple' | 'list'): PyValue {
    this.pos++;
    const items: PyValue[] = [];
    let sawComma = false;
    for (;;) {
      this.ws();
      if (this.text[this.pos] === close) {
        this.pos++;
        break;
      }
      items.push(this.value(depth + 1));
      this.ws();
      if (this.text[this.pos] === ',') {
        this.pos++;
        sawComma = true;
      } else if (this.text[this.pos] === close) {
        this.pos++;
        break;
      } else this.fail(`expected ',' or '${close}'`);
    }
    // "(3)" is just 3 in Python; only "(3,)" is a 1-tuple.
    if (kind === 'tuple' && items.length === 1 && !sawComma) return items[0];
    return { kind, items };
  }

  private dict(depth: number): PyValue {
    this.pos++;
    const entries: Array<[PyValue, PyValue]> = [];
    for (;;) {
      this.ws();
      if (this.text[this.pos] === '}') {
        this.pos++;
        return { kind: 'dict', entries };
      }
      const k = this.value(depth + 1);
      this.ws();
      if (this.text[this.pos] !== ':') this.fail("expected ':'");
      this.pos++;
      entries.push([k, this.value(depth + 1)]);
      this.ws();
      if (this.text[this.pos] === ',') this.pos++;
      else if (this.text[this.pos] !== '}') this.fail("expected ',' or '}'");
    }
  }
}

export function pyRepr(v: PyValue): string {
  switch (v.kind) {
    case 'str': return `'${v.value}'`;
    case 'int': return v.value.toString();
    case 'bool': return v.value ? 'True' : 'False';
    case 'none': return 'None';
    case 'tuple': return `(${v.items.map(pyRepr).join(', ')}${v.items.length === 1 ? ',' : ''})`;
    case 'list': return `[${v.items.map(pyRepr).join(', ')}]`;
    case 'dict': return `{${v.entries.map(([k, x]) => `${pyRepr(k)}: ${pyRepr(x)}`).join(', ')}}`;
  }
}

