// Credentials the registry reads from files (TLS CA, client certificate and key, the auth
// password), re-read on an interval so that rotated files take effect without a restart.
//
// TLS: this object is a gRPC CertificateProvider. Channels built on it ask it for the latest
// certificates at every new connection; established connections keep the certificates they
// were opened with (TLS authenticates at the handshake), so a rotation takes effect when etcd
// or the network drops a connection, and always before the old certificate stops working as
// long as the rotation happens before expiry.
// Password: etcd3 reads `auth.password` each time it (re)authenticates, i.e. when its token is
// rejected, so the getter below makes a changed password file effective on the next login.
import { X509Certificate, createHash, createPrivateKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createSecureContext, rootCertificates } from 'node:tls';
import type { experimental } from '@grpc/grpc-js';

type CaListener = experimental.CaCertificateUpdateListener;
type IdentityListener = experimental.IdentityCertificateUpdateListener;

export interface CredentialFileNames {
  /** CA bundle verifying the server; Node's bundled roots when absent. */
  readonly caFile?: string | undefined;
  readonly certFile?: string | undefined;
  readonly keyFile?: string | undefined;
  readonly passwordFile?: string | undefined;
}

export interface CredentialFilesOptions extends CredentialFileNames {
  /** How often the files are re-read; 0 disables the refresh. */
  readonly refreshMs: number;
  /** Problems and changes, one message each; never contains file contents. */
  readonly report?: ((level: 'info' | 'warn' | 'error', message: string) => void) | undefined;
  readonly now?: () => number;
}

interface Snapshot {
  readonly ca: Buffer | undefined;
  readonly cert: Buffer | undefined;
  readonly key: Buffer | undefined;
  readonly password: string | undefined;
  /** Fingerprint of everything above, to notice changes without keeping copies around. */
  readonly digest: string;
  /** Why the files cannot be used as they are; undefined when they look fine. */
  readonly problem: string | undefined;
}

export class CredentialFiles implements experimental.CertificateProvider {
  readonly #opts: CredentialFilesOptions;
  readonly #caListeners = new Set<CaListener>();
  readonly #identityListeners = new Set<IdentityListener>();
  /** The files as last read. */
  #current: Snapshot | undefined;
  /** The files new connections use: the first read, then every later read without problems. */
  #inUse: Snapshot | undefined;
  #timer: NodeJS.Timeout | undefined;
  #refreshing: Promise<void> | undefined;

  constructor(opts: CredentialFilesOptions) {
    if ((opts.certFile === undefined) !== (opts.keyFile === undefined)) {
      throw new Error('registry: TLS client certificate and key must be given together');
    }
    this.#opts = opts;
  }

  get usesTls(): boolean {
    return this.#opts.caFile !== undefined || this.#opts.certFile !== undefined;
  }

  get hasIdentity(): boolean {
    return this.#opts.certFile !== undefined;
  }

  /** The password as last read; etcd3 calls this on every (re)authentication. */
  get password(): string {
    return this.#inUse?.password ?? '';
  }

  /** The TLS files new connections use (for a diagnostic handshake). */
  tlsMaterial(): { ca: Buffer | undefined; cert: Buffer | undefined; key: Buffer | undefined } {
    return { ca: this.#inUse?.ca, cert: this.#inUse?.cert, key: this.#inUse?.key };
  }

  /** What is wrong with the files right now (for errors and readiness detail). */
  get problem(): string | undefined {
    return this.#current?.problem;
  }

  /** Reads the files once, then keeps re-reading them every refreshMs. */
  async start(): Promise<void> {
    await this.refresh();
    if (this.#opts.refreshMs > 0 && this.#timer === undefined) {
      this.#timer = setInterval(() => void this.refresh(), this.#opts.refreshMs);
      this.#timer.unref();
    }
  }

  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Re-reads the files; listeners hear about it only when something changed. */
  refresh(): Promise<void> {
    // A slow disk must not pile up overlapping reads.
    this.#refreshing ??= this.#load().finally(() => {
      this.#refreshing = undefined;
    });
    return this.#refreshing;
  }

  async #load(): Promise<void> {
    const next = await this.#read();
    const previous = this.#current;
    if (previous !== undefined && previous.digest === next.digest) return;
    this.#current = next;
    const report = this.#opts.report;
    if (next.problem !== undefined) {
      // A half-written or broken rotation must not replace credentials that work.
      report?.('error', this.#inUse === undefined ? next.problem : `${next.problem}; keeping the previous credentials`);
      if (this.#inUse !== undefined) return;
    } else if (previous !== undefined) {
      report?.('info', 'etcd credential files changed; new connections use them');
    }
    this.#inUse = next;
    for (const listener of this.#caListeners) listener(this.#caUpdate());
    for (const listener of this.#identityListeners) listener(this.#identityUpdate());
  }

  async #read(): Promise<Snapshot> {
    const problems: string[] = [];
    const load = async (what: string, file: string | undefined): Promise<Buffer | undefined> => {
      if (file === undefined) return undefined;
      try {
        return await readFile(file);
      } catch (err) {
        problems.push(`cannot read the etcd ${what} file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
        return undefined;
      }
    };
    const ca = await load('CA', this.#opts.caFile);
    const cert = await load('client certificate', this.#opts.certFile);
    const key = await load('client key', this.#opts.keyFile);
    const passwordBytes = await load('password', this.#opts.passwordFile);
    const password = passwordBytes?.toString('utf8').replace(/\r?\n$/, '');
    if (ca !== undefined) problems.push(...checkCertificate('CA certificate', this.#opts.caFile, ca, this.#now()));
    if (cert !== undefined) problems.push(...checkCertificate('client certificate', this.#opts.certFile, cert, this.#now()));
    if (cert !== undefined && key !== undefined) problems.push(...checkKeyPair(this.#opts.certFile, cert, key));
    if (this.#opts.passwordFile !== undefined && password === '') {
      problems.push(`the etcd password file ${this.#opts.passwordFile} is empty`);
    }
    const hash = createHash('sha256');
    for (const part of [ca, cert, key, passwordBytes]) {
      hash.update(part === undefined ? '-' : `${part.length}:`);
      if (part !== undefined) hash.update(part);
    }
    return { ca, cert, key, password, digest: hash.digest('hex'), problem: problems.length > 0 ? problems.join('; ') : undefined };
  }

  #now(): number {
    return this.#opts.now?.() ?? Date.now();
  }

  #caUpdate(): experimental.CaCertificateUpdate | null {
    if (this.#opts.caFile === undefined) return { caCertificate: Buffer.from(rootCertificates.join('\n')) };
    const ca = this.#inUse?.ca;
    return ca === undefined ? null : { caCertificate: ca };
  }

  #identityUpdate(): experimental.IdentityCertificateUpdate | null {
    const cert = this.#inUse?.cert;
    const key = this.#inUse?.key;
    if (cert === undefined || key === undefined) return null;
    // gRPC builds a secure context from this; unusable pairs would only fail there, later.
    try {
      createSecureContext({ cert, key });
    } catch {
      return null;
    }
    return { certificate: cert, privateKey: key };
  }

  addCaCertificateListener(listener: CaListener): void {
    this.#caListeners.add(listener);
    if (this.#inUse !== undefined) listener(this.#caUpdate());
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.#caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.#identityListeners.add(listener);
    if (this.#inUse !== undefined) listener(this.#identityUpdate());
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.#identityListeners.delete(listener);
  }
}

/** Expiry and parse problems of the first certificate in a PEM file, as readable sentences. */
export function checkCertificate(what: string, file: string | undefined, pem: Buffer, now: number): string[] {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pem);
  } catch {
    return [`the etcd ${what} file ${file ?? ''} does not hold a PEM certificate`];
  }
  const notBefore = Date.parse(cert.validFrom);
  const notAfter = Date.parse(cert.validTo);
  if (now > notAfter) return [`the etcd ${what} in ${file ?? ''} expired at ${new Date(notAfter).toISOString()}`];
  if (now < notBefore) return [`the etcd ${what} in ${file ?? ''} is not valid before ${new Date(notBefore).toISOString()}`];
  return [];
}

function checkKeyPair(certFile: string | undefined, cert: Buffer, key: Buffer): string[] {
  try {
    const x509 = new X509Certificate(cert);
    if (!x509.checkPrivateKey(createPrivateKey(key))) {
      return [`the etcd client key does not match the certificate in ${certFile ?? ''}`];
    }
    return [];
  } catch {
    return ['the etcd client key file does not hold a usable PEM private key'];
  }
}
