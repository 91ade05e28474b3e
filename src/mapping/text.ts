// Small pure string helpers shared by the mapping: character classes, name and IP checks,
// and quoting of untrusted values for human-readable messages.

/**
 * Characters that must never reach a key, a value or a log message unescaped: C0 and C1
 * controls, DEL, and the Unicode line/paragraph separators (they break line-based consumers
 * such as confd templates and log shippers).
 */
export function isControlCode(c: number): boolean {
  return c < 0x20 || (c >= 0x7f && c <= 0x9f) || c === 0x2028 || c === 0x2029;
}

export function hasControlChars(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    if (isControlCode(s.charCodeAt(i))) return true;
  }
  return false;
}

/** Code points escaped in messages: controls, surrogates (lone), bidi overrides, zero-width. */
function needsEscape(cp: number): boolean {
  return (
    isControlCode(cp) ||
    (cp >= 0xd800 && cp <= 0xdfff) ||
    (cp >= 0x200b && cp <= 0x200f) ||
    (cp >= 0x202a && cp <= 0x202e) ||
    (cp >= 0x2066 && cp <= 0x2069) ||
    cp === 0xfeff
  );
}

/** Longest prefix of an untrusted value shown in a message. */
export const MAX_SHOWN = 64;

/**
 * Quote an untrusted value for a message: double quotes, control and invisible characters
 * escaped as \u{..}, truncated to MAX_SHOWN code units with the full length noted.
 */
export function quote(value: string, max: number = MAX_SHOWN): string {
  const cut = value.length > max;
  const shown = cut ? value.slice(0, max) : value;
  let out = '"';
  for (const ch of shown) {
    const cp = ch.codePointAt(0) ?? 0;
    if (cp === 0x22 || cp === 0x5c) out += '\\' + ch;
    else if (needsEscape(cp)) out += '\\u{' + cp.toString(16) + '}';
    else out += ch;
  }
  out += '"';
  if (cut) out += `… (${String(value.length)} chars)`;
  return out;
}

function isAlnum(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

/**
 * A name that may appear inside a key segment (service, environment, namespace, pod, node):
 * 1..max characters from [A-Za-z0-9._-], starting with a letter or digit (so never '.',
 * '..', a hidden-looking '.x' or a flag-looking '-x'), never '/', never whitespace, controls
 * or non-ASCII. Returns a reason when the name is not acceptable, undefined when it is.
 */
export function nameProblem(value: string, max: number): string | undefined {
  if (value.length === 0) return 'is empty';
  if (value.length > max) return `is longer than ${String(max)} characters`;
  if (!isAlnum(value.charCodeAt(0))) return 'must start with a letter or digit';
  for (let i = 1; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (!(isAlnum(c) || c === 0x2d /* - */ || c === 0x2e /* . */ || c === 0x5f) /* _ */) {
      return "may contain only letters, digits, '-', '_' and '.'";
    }
  }
  return undefined;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function isHex(c: number): boolean {
  return isDigit(c) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

function isIPv4(s: string): boolean {
  let parts = 0;
  let i = 0;
  while (true) {
    const start = i;
    let v = 0;
    while (i < s.length && isDigit(s.charCodeAt(i))) {
      v = v * 10 + (s.charCodeAt(i) - 0x30);
      i++;
      if (i - start > 3) return false;
    }
    if (i === start || v > 255) return false;
    parts++;
    if (i === s.length) return parts === 4;
    if (s.charCodeAt(i) !== 0x2e || parts === 4) return false;
    i++;
  }
}

function isIPv6(s: string): boolean {
  if (s.length < 2 || s.length > 45) return false;
  const dbl = s.indexOf('::');
  if (dbl !== -1 && s.indexOf('::', dbl + 1) !== -1) return false;
  const halves = dbl === -1 ? [s] : [s.slice(0, dbl), s.slice(dbl + 2)];
  let groups = 0;
  for (let h = 0; h < halves.length; h++) {
    const half = halves[h] ?? '';
    if (half === '') continue;
    const items = half.split(':');
    for (let j = 0; j < items.length; j++) {
      const item = items[j] ?? '';
      const last = h === halves.length - 1 && j === items.length - 1;
      if (last && item.includes('.')) {
        if (!isIPv4(item)) return false;
        groups += 2;
        continue;
      }
      if (item.length < 1 || item.length > 4) return false;
      for (let k = 0; k < item.length; k++) if (!isHex(item.charCodeAt(k))) return false;
      groups++;
    }
  }
  return dbl === -1 ? groups === 8 : groups <= 7;
}

/** 4 or 6 for a textual IPv4/IPv6 address (no zone, no brackets, no prefix), else 0. */
export function ipFamilyOf(s: string): 0 | 4 | 6 {
  if (s.includes(':')) return isIPv6(s) ? 6 : 0;
  return isIPv4(s) ? 4 : 0;
}
