// Bundles the controller for the container image: tree-shaken, minified ES modules
// (bin/etcd-registrar.js and everything it imports from dist/ and node_modules/) plus the
// .proto files etcd3 reads at run time. The production node_modules are 105 MB (65 MB of
// them @kubernetes/client-node); what the controller loads is ~1.7 MB (the client-node fallback,
// ~3.4 MB more, is a chunk read only when a configuration needs it), which keeps the image small
// and the controller's heap at rest free of module source it never runs.
//   node scripts/bundle.ts OUT_DIR        (after `npm run build`; the Dockerfile runs it)
// Layout of OUT_DIR: bin/etcd-registrar.mjs, bin/*-HASH.mjs (chunks; dynamic imports: the client-node
// fallback), proto/{rpc,kv,auth}.proto.
import { copyFile, mkdir, readdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..');

export async function bundle(outDir: string): Promise<void> {
  await rm(outDir, { recursive: true, force: true });
  await mkdir(join(outDir, 'proto'), { recursive: true });
  await build({
    entryPoints: [join(repoRoot, 'bin', 'etcd-registrar.js')],
    // Code behind a dynamic import() goes into chunks of its own, loaded only when that import
    // runs: @kubernetes/client-node (the fallback of src/source/kube-access-client-node.ts) is
    // neither parsed nor held in memory unless a configuration needs it (issue 15).
    outdir: join(outDir, 'bin'),
    entryNames: '[name]',
    // Beside the entry, not in a subdirectory: etcd3 finds its .proto files from __dirname.
    chunkNames: '[name]-[hash]',
    outExtension: { '.js': '.mjs' },
    splitting: true,
    bundle: true,
    platform: 'node',
    target: 'node24',
    format: 'esm',
    minify: true,
    // Error classes are told apart by name in places (etcd3, the controller's retry).
    keepNames: true,
    legalComments: 'none',
    logLevel: 'warning',
    // The CommonJS dependencies (etcd3, grpc-js, client-node) call require() and read
    // __dirname, which an ES module does not have. etcd3 loads
    // `${__dirname}/../proto/rpc.proto` when it is first imported, hence proto/ next to bin/.
    banner: {
      js: [
        "import { createRequire as __bundleCreateRequire } from 'node:module';",
        "import { dirname as __bundleDirname } from 'node:path';",
        "import { fileURLToPath as __bundleFileURLToPath } from 'node:url';",
        'const require = __bundleCreateRequire(import.meta.url);',
        'const __filename = __bundleFileURLToPath(import.meta.url);',
        'const __dirname = __bundleDirname(__filename);',
      ].join('\n'),
    },
  });
  const protoDir = join(repoRoot, 'node_modules', 'etcd3', 'proto');
  for (const file of await readdir(protoDir)) {
    if (file.endsWith('.proto')) await copyFile(join(protoDir, file), join(outDir, 'proto', file));
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const outDir = process.argv[2];
  if (outDir === undefined) {
    process.stderr.write('usage: node scripts/bundle.ts OUT_DIR\n');
    process.exit(2);
  }
  await bundle(outDir);
}
