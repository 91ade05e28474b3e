#!/usr/bin/env -S node --max-semi-space-size=4
// Entry point of the `etcd-registrar` command. Checks the Node version first, because
// @kubernetes/client-node 2.x fails in obscure ways below Node 22.19.
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 19)) {
  process.stderr.write(`etcd-registrar: Node.js >= 24 is required, this is ${process.version} (run it through npm, npx or the container image)\n`);
  process.exit(2);
}
// V8: a young generation of 4 MB semi-spaces (the shebang and the image's entrypoint pass
// --max-semi-space-size=4; V8 reads it only at start-up) instead of up to 32 MB: 242 MB RSS at
// rest with 10,000 pods instead of ~345 MB, with Node's speed (docs/benchmarks.md, "Memory").
// ETCD_REGISTRAR_OPTIMIZE_FOR_SIZE=true trades CPU and latency for memory (161 MB, but ~5x
// the CPU at rest and twice the 200/s latency tail from GC); set here, before anything is
// loaded, because NODE_OPTIONS refuses that flag.
if (process.env.ETCD_REGISTRAR_OPTIMIZE_FOR_SIZE === 'true') {
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
