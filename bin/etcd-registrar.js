#!/usr/bin/env node
// Entry point of the `etcd-registrar` command. Checks the Node version first, because
// @kubernetes/client-node 2.x fails in obscure ways below Node 22.19.
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 19)) {
  process.stderr.write(`etcd-registrar: Node.js >= 24 is required, this is ${process.version} (run it through npm, npx or the container image)\n`);
  process.exit(2);
}
// V8 tuned for memory over speed (docs/benchmarks.md, "Memory"): with 10,000 pods 158-161 MB
// RSS at rest instead of ~345 MB. Set here, before anything is loaded, because NODE_OPTIONS
// refuses this flag and every way of starting the command (image, npm, tests) should get it.
// ETCD_REGISTRAR_OPTIMIZE_FOR_SIZE=false restores Node's defaults.
if (process.env.ETCD_REGISTRAR_OPTIMIZE_FOR_SIZE !== 'false') {
  const { setFlagsFromString } = await import('node:v8');
  setFlagsFromString('--optimize-for-size');
}
const { main } = await import('../dist/cli.js');
const code = await main(process.argv.slice(2), process.env);
process.exitCode = code;
// The shutdown is complete here, but a standby stopped while campaigning leaves an etcd3
// watch behind that reconnects forever (Campaign.resign() does not cancel the watcher of
// its waitForDeletes), which would keep the process alive until SIGKILL. Leave within 2 s.
setTimeout(() => process.exit(code), 2000).unref();
