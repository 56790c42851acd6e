/**
 * A small XML well-formedness check for the SVG we write (no parser dependency): one root element, properly
 * nested and closed tags, quoted unique attributes, only the five predefined entities or numeric references, no
 * stray '<' or '&' in text. Returns the element names in document order; throws with the offset on a fault.
 */
const NAME = /^[A-Za-z_:][-A-Za-z0-9_:.]*/;
const ENTITY = /^&(?:amp|lt|gt|quot|apos|#[0-9]+|#x[0-9A-Fa-f]+);/;

function checkText(text: string, at: number): void {
  for (let i = text.indexOf('&'); i >= 0; i = text.indexOf('&', i + 1)) {
    if (!ENTITY.test(text.slice(i))) throw new Error(`XML: bad entity reference at offset ${at + i}`);
  }
  if (text.includes('<')) throw new Error(`XML: stray '<' at offset ${at + text.indexOf('<')}`);
}

export function checkXmlWellFormed(xml: string): string[] {
  const stack: string[] = [];
  const elements: string[] = [];
  let roots = 0;
  let i = 0;
  if (xml.startsWith('<?xml')) {
    const end = xml.indexOf('?>');
    if (end < 0) throw new Error('XML: unterminated declaration');
    i = end + 2;
  }
  while (i < xml.length) {
    const lt = xml.indexOf('<', i);
    const text = xml.slice(i, lt < 0 ? xml.length : lt);
    if (stack.length === 0 && text.trim() !== '') throw new Error(`XML: text outside the root element at offset ${i}`);
    checkText(text, i);
    if (lt < 0) break;
    if (xml.startsWith('<!--', lt)) {
      const end = xml.indexOf('-->', lt + 4);
      if (end < 0) throw new Error(`XML: unterminated comment at offset ${lt}`);
      i = end + 3;
      continue;
    }
    const gt = xml.indexOf('>', lt);
    if (gt < 0) throw new Error(`XML: unterminated tag at offset ${lt}`);
    const body = xml.slice(lt + 1, gt);
    if (body.startsWith('/')) {
      const name = body.slice(1).trim();
      const open = stack.pop();
      if (open !== name) throw new Error(`XML: </${name}> at offset ${lt} closes <${open ?? 'nothing'}>`);
      i = gt + 1;
      continue;
    }
    const selfClosing = body.endsWith('/');
    const inner = selfClosing ? body.slice(0, -1) : body;
    const m = NAME.exec(inner);
    if (!m) throw new Error(`XML: bad tag name at offset ${lt}`);
    const name = m[0];
    let rest = inner.slice(name.length);
    const seen = new Set<string>();
    for (;;) {
      const trimmed = rest.replace(/^\s+/, '');
      if (trimmed === '') break;
      if (trimmed.length === rest.length) throw new Error(`XML: missing space before attribute in <${name}> at offset ${lt}`);
      const a = /^([A-Za-z_:][-A-Za-z0-9_:.]*)\s*=\s*("([^"<]*)"|'([^'<]*)')/.exec(trimmed);
      if (!a) throw new Error(`XML: malformed attribute in <${name}> at offset ${lt}: ${trimmed.slice(0, 30)}`);
      if (seen.has(a[1])) throw new Error(`XML: duplicate attribute ${a[1]} in <${name}> at offset ${lt}`);
      seen.add(a[1]);
      checkText(a[3] ?? a[4] ?? '', lt);
      rest = trimmed.slice(a[0].length);
    }
    if (stack.length === 0) roots++;
    if (roots > 1) throw new Error(`XML: a second root element <${name}> at offset ${lt}`);
    elements.push(name);
    if (!selfClosing) stack.push(name);
    i = gt + 1;
  }
  if (stack.length) throw new Error(`XML: unclosed <${stack[stack.length - 1]}>`);
  if (roots !== 1) throw new Error('XML: no root element');
  return elements;
}
