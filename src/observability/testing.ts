// Test helper: parses a log line as strictly as the strictest log pipeline does. JSON.parse
// keeps the last of two equal keys silently; log pipelines drop or reject such lines.

/** JSON.parse that also rejects an object with the same key twice (throws naming it). */
export function parseJsonStrict(text: string): unknown {
  let pos = 0;
  const fail = (what: string): never => {
    throw new SyntaxError(`${what} at ${pos} in ${text.slice(0, 200)}`);
  };
  const space = (): void => {
    while (pos < text.length && ' \t\n\r'.includes(text[pos] ?? '')) pos++;
  };
  // Strings, numbers and literals are delegated to JSON.parse once their extent is known.
  const scalar = (pattern: RegExp): unknown => {
    pattern.lastIndex = pos;
    const match = pattern.exec(text);
    if (match === null) return fail('invalid JSON value');
    pos += match[0].length;
    return JSON.parse(match[0]) as unknown;
  };
  const value = (): unknown => {
    space();
    const c = text[pos];
    if (c === '{') {
      pos++;
      const object: Record<string, unknown> = {};
      const seen = new Set<string>();
      space();
      if (text[pos] === '}') {
        pos++;
        return object;
      }
      for (;;) {
        space();
        const key = scalar(/"(?:[^"\\\u0000-\u001f]|\\.)*"/y) as string;
        if (seen.has(key)) fail(`duplicate key "${key}"`);
        seen.add(key);
        space();
        if (text[pos] !== ':') fail('expected ":"');
        pos++;
        object[key] = value();
        space();
        if (text[pos] === ',') pos++;
        else if (text[pos] === '}') {
          pos++;
          return object;
        } else fail('expected "," or "}"');
      }
    }
    if (c === '[') {
      pos++;
      const array: unknown[] = [];
      space();
      if (text[pos] === ']') {
        pos++;
        return array;
      }
      for (;;) {
        array.push(value());
        space();
        if (text[pos] === ',') pos++;
        else if (text[pos] === ']') {
          pos++;
          return array;
        } else fail('expected "," or "]"');
      }
    }
    if (c === '"') return scalar(/"(?:[^"\\\u0000-\u001f]|\\.)*"/y);
    return scalar(/-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null/y);
  };
  const result = value();
  space();
  if (pos !== text.length) fail('trailing text');
  return result;
}

/** Every non-empty line of a log as a strictly parsed JSON object. */
export function parseLogLinesStrict(text: string): Array<Record<string, unknown>> {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const parsed = parseJsonStrict(line);
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new SyntaxError(`not a JSON object: ${line.slice(0, 200)}`);
      return parsed as Record<string, unknown>;
    });
}
