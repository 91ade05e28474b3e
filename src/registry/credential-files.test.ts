import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CredentialFiles, checkCertificate } from './credential-files.ts';

describe('CredentialFiles', () => {
  let dir: string;
  let certPem: Buffer;
  let keyPem: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'credential-files-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'a.key', '-out', 'a.crt', '-days', '1', '-subj', '/CN=a'], { cwd: dir, stdio: 'ignore' });
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'b.key', '-out', 'b.crt', '-days', '1', '-subj', '/CN=b'], { cwd: dir, stdio: 'ignore' });
    certPem = await readFile(join(dir, 'a.crt'));
    keyPem = await readFile(join(dir, 'a.key'), 'utf8');
  });

  after(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  test('validity window: expired and not-yet-valid certificates are named with their dates', () => {
    const day = 24 * 3600 * 1000;
    assert.deepEqual(checkCertificate('CA certificate', 'ca.crt', certPem, Date.now()), []);
    assert.match(checkCertificate('CA certificate', 'ca.crt', certPem, Date.now() + 3 * day)[0] ?? '', /^the etcd CA certificate in ca\.crt expired at \d{4}-/);
    assert.match(checkCertificate('CA certificate', 'ca.crt', certPem, Date.now() - 3 * day)[0] ?? '', /is not valid before \d{4}-/);
    assert.match(checkCertificate('CA certificate', 'x', Buffer.from('junk'), Date.now())[0] ?? '', /does not hold a PEM certificate/);
  });

  test('problems are sentences naming files, never their contents', async () => {
    const files = new CredentialFiles({
      caFile: join(dir, 'missing.crt'),
      certFile: join(dir, 'a.crt'),
      keyFile: join(dir, 'b.key'),
      passwordFile: join(dir, 'empty'),
      refreshMs: 0,
    });
    await writeFile(join(dir, 'empty'), '\n');
    await files.start();
    const problem = files.problem ?? '';
    assert.match(problem, /cannot read the etcd CA file .*missing\.crt: ENOENT/);
    assert.match(problem, /client key does not match the certificate/);
    assert.match(problem, /password file .*empty is empty/);
    assert.ok(!problem.includes('PRIVATE KEY') && !problem.includes(keyPem.split('\n')[1] ?? '-'));
  });

  test('a broken update keeps the working credentials; a good one replaces them', async () => {
    const password = join(dir, 'password');
    await writeFile(password, 'one\n');
    const reports: string[] = [];
    const files = new CredentialFiles({
      certFile: join(dir, 'live.crt'),
      keyFile: join(dir, 'live.key'),
      passwordFile: password,
      refreshMs: 0,
      report: (level, message) => reports.push(`${level}: ${message}`),
    });
    await writeFile(join(dir, 'live.crt'), certPem);
    await writeFile(join(dir, 'live.key'), keyPem);
    const identities: Array<string | null> = [];
    files.addIdentityCertificateListener((u) => identities.push(u === null ? null : u.certificate.toString()));
    await files.start();
    assert.equal(identities.length, 1);
    assert.equal(files.password, 'one');

    // Half a rotation: the key changed, the certificate not yet.
    await writeFile(join(dir, 'live.key'), await readFile(join(dir, 'b.key')));
    await writeFile(password, 'two\n');
    await files.refresh();
    assert.equal(identities.length, 1, 'listeners keep the working pair');
    assert.equal(files.password, 'one');
    assert.match(reports.at(-1) ?? '', /^error: .*does not match.*keeping the previous credentials$/);

    await writeFile(join(dir, 'live.crt'), await readFile(join(dir, 'b.crt')));
    await files.refresh();
    assert.equal(identities.length, 2);
    assert.notEqual(identities[1], identities[0]);
    assert.equal(files.password, 'two');
    assert.match(reports.at(-1) ?? '', /^info: etcd credential files changed/);

    // Nothing changed: nobody is told anything.
    await files.refresh();
    assert.equal(identities.length, 2);
  });
});
