// Node's HTTP module, taken without an ESM import. An `import ... from 'node:http'` (named or
// namespace) makes Node evaluate every export of the builtin, and its lazy WebSocket /
// CloseEvent / MessageEvent getters load Node's bundled undici and web streams, which the
// controller never uses: 12 MB of RSS in a bare process, 2-3 MiB of the controller's at rest
// (docs/decisions/0047). Types still come from `import type ... from 'node:http'` (erased).
export const http = process.getBuiltinModule('node:http');
