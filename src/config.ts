// Command line and environment parsing. Pure: takes argv and env, returns a Config or a
// ConfigError whose message is the one line the CLI prints before exiting with code 2.
import { parseArgs } from 'node:util';
import type { Policy } from './types.ts';
import { GRANTS_MODES, parseStaticGrants, type GrantsMode } from './grants/grants.ts';
import { commands, envName, flagSpecs, helpText, type Command, type FlagKind } from './flags.ts';
import { dnsZoneProblem, mappingConfigProblems, MAX_DNS_TTL_SECONDS, normalizeKeyRoot, skydnsZonePath, type MappingConfig, type MappingSetting } from './mapping/index.ts';

export { envName, flagSpecs, helpText } from './flags.ts';
export type { Command } from './flags.ts';
export type ValueFormat = 'template' | 'json' | 'skydns';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';

export interface Config {
  readonly command: Command;
  readonly kubeconfig: string | undefined;
  readonly etcdEndpoints: readonly string[];
  readonly etcdCaFile: string | undefined;
  readonly etcdCertFile: string | undefined;
  readonly etcdKeyFile: string | undefined;
  readonly etcdServerName: string | undefined;
  readonly etcdUsername: string | undefined;
  readonly etcdPasswordFile: string | undefined;
  readonly etcdCallTimeoutMs: number;
  readonly etcdCredentialRefreshMs: number;
  readonly environment: string;
  readonly ownerId: string;
  readonly ownerRecordPrefix: string;
  readonly leaseTtlSeconds: number;
  readonly reconcileIntervalMs: number;
  readonly fullReadIntervalMs: number;
  readonly leaderElection: boolean;
  readonly electionTtlSeconds: number;
  readonly namespaces: readonly string[];
  readonly labelSelector: string | undefined;
  /** How pods, nodes and namespaces are listed and watched (docs/decisions/0022). */
  readonly kubeContentType: 'json' | 'protobuf';
  readonly annotationPrefix: string;
  /** Service grants mode (docs/decisions/0009). */
  readonly serviceGrants: GrantsMode;
  /** Static grants from --grants: namespace -> service patterns (merged with the Namespace annotations). */
  readonly staticGrants: ReadonlyMap<string, readonly string[]>;
  readonly keyRoot: string;
  readonly keyTemplate: string;
  readonly valueTemplate: string;
  readonly valueFormat: ValueFormat;
  /** --dns-zone: set exactly when valueFormat is 'skydns'. */
  readonly dnsZone: string | undefined;
  /** --dns-ttl in seconds (the "ttl" of skydns values). */
  readonly dnsTtlSeconds: number;
  readonly policy: Policy;
  readonly dryRun: boolean;
  readonly once: boolean;
  readonly maxDeleteShare: number;
  readonly forceDeletes: boolean;
  readonly maxBatchKeys: number;
  readonly maxInflightBatches: number;
  readonly metricsAddress: string;
  readonly logLevel: LogLevel;
  readonly output: 'table' | 'json';
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

const durationPattern = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/;
const durationUnitMs: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses "500ms", "30s", "1.5m", "2h" or bare seconds ("30"). */
export function parseDurationMs(flag: string, text: string): number {
  const match = durationPattern.exec(text.trim());
  if (match === null) {
    throw new ConfigError(`--${flag}: ${JSON.stringify(text)} is not a duration (examples: 500ms, 30s, 5m)`);
  }
  const [, amount = '', unit = 's'] = match;
  return Number(amount) * (durationUnitMs[unit] ?? 1000);
}

function parseInteger(flag: string, text: string, min: number, max: number): number {
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new ConfigError(`--${flag}: ${JSON.stringify(text)} must be a whole number from ${min} to ${max}`);
  }
  return value;
}

function parseShare(flag: string, text: string): number {
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value) || value < 0 || value > 1) {
    throw new ConfigError(`--${flag}: ${JSON.stringify(text)} must be a number from 0 to 1`);
  }
  return value;
}

function parseChoice<T extends string>(flag: string, text: string, choices: readonly T[]): T {
  const choice = choices.find((candidate) => candidate === text);
  if (choice === undefined) {
    throw new ConfigError(`--${flag}: ${JSON.stringify(text)} is not one of ${choices.join(', ')}`);
  }
  return choice;
}

function parseBoolean(flag: string, text: string): boolean {
  const normalized = text.trim().toLowerCase();
  if (['true', '1', 'yes'].includes(normalized)) return true;
  if (['false', '0', 'no', ''].includes(normalized)) return false;
  throw new ConfigError(`--${flag} (${envName(flag)}): ${JSON.stringify(text)} is not a boolean (true or false)`);
}

function splitList(text: string): string[] {
  return text.split(',').map((part) => part.trim()).filter((part) => part !== '');
}

function parseEndpoints(text: string): string[] {
  const endpoints = splitList(text);
  if (endpoints.length === 0) throw new ConfigError('--etcd-endpoints: at least one endpoint is required');
  for (const endpoint of endpoints) {
    let url: URL;
    try {
      url = new URL(endpoint);
    } catch {
      throw new ConfigError(`--etcd-endpoints: ${JSON.stringify(endpoint)} is not a URL (example: https://etcd-0.etcd:2379)`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new ConfigError(`--etcd-endpoints: ${JSON.stringify(endpoint)} must use http:// or https://`);
    }
  }
  return endpoints;
}

export type ParseResult = { readonly kind: 'config'; readonly config: Config } | { readonly kind: 'help'; readonly text: string };

/** Parses the command line; flags win over environment variables, which win over defaults. */
export function parseConfig(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): ParseResult {
  const [commandArg, ...rest] = argv;
  if (commandArg === undefined || commandArg === '--help' || commandArg === '-h' || commandArg === 'help') {
    return { kind: 'help', text: helpText() };
  }
  const command = parseCommand(commandArg);
  const values = parseFlags(rest);
  if (values['help'] === true) return { kind: 'help', text: helpText() };
  const config = readConfig(command, settingsOf(command, values, env));
  checkMappingSettings(config);
  if (config.metricsAddress !== '') parseListenAddress(config.metricsAddress);
  return { kind: 'config', config };
}

function parseCommand(text: string): Command {
  const command = commands.find((candidate) => candidate === text);
  if (command === undefined) {
    throw new ConfigError(`unknown command ${JSON.stringify(text)}: expected one of ${commands.join(', ')} (see --help)`);
  }
  return command;
}

type FlagValues = Readonly<Record<string, string | boolean | undefined>>;

/** The flags given on the command line (strict: an unknown flag is a usage error). */
function parseFlags(args: readonly string[]): FlagValues {
  const options: Record<string, { type: FlagKind }> = { help: { type: 'boolean' } };
  for (const spec of flagSpecs) options[spec.name] = { type: spec.kind };
  try {
    return parseArgs({ args: [...args], options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw new ConfigError(error instanceof Error ? error.message.split('\n')[0] ?? String(error) : String(error));
  }
}

/** Every setting's text, merged from flag, environment variable and default. */
interface Settings {
  /** The text of a setting ('' when unset and without default). */
  readonly text: (name: string) => string;
  /** The trimmed text of a setting; undefined when unset or blank. */
  readonly optional: (name: string) => string | undefined;
  /** Set by flag or environment variable, not left to its default. */
  readonly isSet: (name: string) => boolean;
}

/**
 * A flag that does not apply to the command is refused when it is read, so the order in
 * which readConfig reads the settings decides which of several mistakes is reported.
 */
function settingsOf(command: Command, values: FlagValues, env: Readonly<Record<string, string | undefined>>): Settings {
  const raw = (name: string): string | undefined => {
    const fromFlag = values[name];
    if (fromFlag !== undefined) {
      const spec = flagSpecs.find((candidate) => candidate.name === name);
      if (spec?.commands !== undefined && !spec.commands.includes(command)) {
        throw new ConfigError(`--${name} does not apply to the ${command} command`);
      }
      return typeof fromFlag === 'boolean' ? String(fromFlag) : fromFlag;
    }
    return env[envName(name)] ?? flagSpecs.find((spec) => spec.name === name)?.default;
  };
  return {
    text: (name) => raw(name) ?? '',
    optional: (name) => {
      const value = raw(name);
      return value === undefined || value.trim() === '' ? undefined : value.trim();
    },
    isSet: (name) => values[name] !== undefined || env[envName(name)] !== undefined,
  };
}

/** Reads and checks every setting; the first problem found is thrown as a ConfigError. */
function readConfig(command: Command, s: Settings): Config {
  const { text, optional } = s;
  const durations = readDurations(s);
  const owner = readOwner(s);
  const credentials = readEtcdCredentials(s);
  const once = parseBoolean('once', text('once'));
  if (command === 'reconcile' && !once) {
    throw new ConfigError('reconcile needs --once (the continuous reconcile is the run command)');
  }
  const valueFormat = parseChoice('value-format', text('value-format'), ['template', 'json', 'skydns'] as const);
  const dns = parseDnsFlags(valueFormat, text('dns-zone').trim(), text('dns-ttl'), text('key-root'), s.isSet);

  return {
    command,
    kubeconfig: optional('kubeconfig'),
    etcdEndpoints: parseEndpoints(text('etcd-endpoints')),
    etcdCaFile: optional('etcd-ca-file'),
    etcdCertFile: credentials.certFile,
    etcdKeyFile: credentials.keyFile,
    etcdServerName: optional('etcd-server-name'),
    etcdUsername: credentials.username,
    etcdPasswordFile: credentials.passwordFile,
    etcdCallTimeoutMs: durations.etcdCallTimeoutMs,
    etcdCredentialRefreshMs: durations.etcdCredentialRefreshMs,
    environment: text('environment').trim(),
    ownerId: owner.ownerId,
    ownerRecordPrefix: owner.ownerRecordPrefix,
    leaseTtlSeconds: durations.leaseTtlSeconds,
    reconcileIntervalMs: durations.reconcileIntervalMs,
    fullReadIntervalMs: durations.fullReadIntervalMs,
    leaderElection: parseBoolean('leader-election', text('leader-election')),
    electionTtlSeconds: durations.electionTtlSeconds,
    namespaces: splitList(text('namespaces')),
    labelSelector: optional('label-selector'),
    kubeContentType: parseChoice('kube-content-type', text('kube-content-type').trim(), ['json', 'protobuf'] as const),
    annotationPrefix: text('annotation-prefix').trim(),
    serviceGrants: parseChoice('service-grants', text('service-grants').trim(), GRANTS_MODES),
    staticGrants: parseGrantsFlag(text('grants')),
    keyRoot: parseKeyRoot(text('key-root')),
    keyTemplate: text('key-template'),
    valueTemplate: text('value-template'),
    valueFormat,
    dnsZone: dns.zone,
    dnsTtlSeconds: dns.ttlSeconds,
    policy: parseChoice('policy', text('policy'), ['sync', 'upsert-only'] as const),
    dryRun: parseBoolean('dry-run', text('dry-run')),
    once,
    maxDeleteShare: parseShare('max-delete-share', text('max-delete-share')),
    forceDeletes: parseBoolean('force-deletes', text('force-deletes')),
    maxBatchKeys: parseInteger('max-batch-keys', text('max-batch-keys'), 1, 100_000),
    maxInflightBatches: parseInteger('max-inflight-batches', text('max-inflight-batches'), 1, 64),
    metricsAddress: text('metrics-address').trim(),
    logLevel: parseChoice('log-level', text('log-level'), ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const),
    output: parseChoice('output', text('output'), ['table', 'json'] as const),
  };
}

/** TTLs and intervals, each with its lower bound (etcd leases count in whole seconds). */
function readDurations({ text }: Settings) {
  const leaseTtlMs = parseDurationMs('lease-ttl', text('lease-ttl'));
  if (leaseTtlMs < 2000 || leaseTtlMs % 1000 !== 0) {
    throw new ConfigError(`--lease-ttl: ${text('lease-ttl')} must be whole seconds, at least 2s (etcd leases count in seconds)`);
  }
  const electionTtlMs = parseDurationMs('election-ttl', text('election-ttl'));
  if (electionTtlMs < 2000 || electionTtlMs % 1000 !== 0) {
    throw new ConfigError(`--election-ttl: ${text('election-ttl')} must be whole seconds, at least 2s`);
  }
  const reconcileIntervalMs = parseDurationMs('reconcile-interval', text('reconcile-interval'));
  if (reconcileIntervalMs < 1000) throw new ConfigError('--reconcile-interval: must be at least 1s');
  const fullReadIntervalMs = parseDurationMs('full-read-interval', text('full-read-interval'));
  const etcdCallTimeoutMs = parseDurationMs('etcd-call-timeout', text('etcd-call-timeout'));
  if (etcdCallTimeoutMs < 100) throw new ConfigError('--etcd-call-timeout: must be at least 100ms');
  const etcdCredentialRefreshMs = parseDurationMs('etcd-credential-refresh-interval', text('etcd-credential-refresh-interval'));
  if (etcdCredentialRefreshMs < 100) throw new ConfigError('--etcd-credential-refresh-interval: must be at least 100ms');
  return {
    leaseTtlSeconds: leaseTtlMs / 1000,
    electionTtlSeconds: electionTtlMs / 1000,
    reconcileIntervalMs,
    fullReadIntervalMs,
    etcdCallTimeoutMs,
    etcdCredentialRefreshMs,
  };
}

/** This installation's identity and where its owner records live. */
function readOwner({ text }: Settings): { ownerId: string; ownerRecordPrefix: string } {
  const ownerId = text('owner-id').trim();
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(ownerId)) {
    throw new ConfigError(`--owner-id: ${JSON.stringify(ownerId)} must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit`);
  }
  const ownerRecordPrefix = text('owner-record-prefix');
  if (!ownerRecordPrefix.startsWith('/') || !ownerRecordPrefix.endsWith('/')) {
    throw new ConfigError('--owner-record-prefix: must start and end with "/"');
  }
  return { ownerId, ownerRecordPrefix };
}

/** The etcd client certificate and key, and user and password file: each pair given together or not at all. */
function readEtcdCredentials({ optional }: Settings) {
  const certFile = optional('etcd-cert-file');
  const keyFile = optional('etcd-key-file');
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new ConfigError('--etcd-cert-file and --etcd-key-file must be given together');
  }
  const username = optional('etcd-username');
  const passwordFile = optional('etcd-password-file');
  if ((username === undefined) !== (passwordFile === undefined)) {
    throw new ConfigError('--etcd-username and --etcd-password-file must be given together');
  }
  return { certFile, keyFile, username, passwordFile };
}

/** The mapping's own checks (annotation prefix, key root, templates), each reported against its flag. */
function checkMappingSettings(config: Config): void {
  const problems = mappingConfigProblems(mappingConfigOf(config));
  if (problems.length > 0) {
    throw new ConfigError(problems.map((p) => `--${MAPPING_FLAGS[p.setting]}: ${p.message}`).join('; '));
  }
}

/** The flag behind each mapping setting, so that a mapping problem names what to fix. */
const MAPPING_FLAGS: Record<MappingSetting, string> = {
  annotationPrefix: 'annotation-prefix',
  environment: 'environment',
  keyRoot: 'key-root',
  keyTemplate: 'key-template',
  valueTemplate: 'value-template',
  valueFormat: 'value-format',
  dnsZone: 'dns-zone',
  dnsTtlSeconds: 'dns-ttl',
};

/**
 * The mapping's view of the configuration: the same normalised values the registry gets, so
 * the key space is decided once.
 */
export function mappingConfigOf(config: Config): MappingConfig {
  return {
    annotationPrefix: config.annotationPrefix,
    environment: config.environment,
    keyRoot: config.keyRoot,
    keyTemplate: config.keyTemplate,
    valueTemplate: config.valueTemplate,
    valueFormat: config.valueFormat,
    dnsZone: config.dnsZone,
    dnsTtlSeconds: config.dnsTtlSeconds,
    // Owner records (and the election keys) live in etcd beside the registrations: no
    // annotation may produce a key there.
    reservedPrefixes: [config.ownerRecordPrefix],
  };
}

/** A key root is an absolute etcd path; normalised to end with '/' ('/registry' -> '/registry/'). */
function parseKeyRoot(text: string): string {
  if (!text.startsWith('/')) {
    throw new ConfigError(`--key-root: ${JSON.stringify(text)} must start with '/' (example: /registry/)`);
  }
  return normalizeKeyRoot(text);
}

/**
 * --dns-zone and --dns-ttl belong to --value-format skydns, whose key layout is fixed: the
 * zone is required there and refused elsewhere, the key and value templates are refused
 * with it, and the key root must contain the zone's path.
 */
function parseDnsFlags(
  format: ValueFormat,
  zone: string,
  ttlText: string,
  keyRootText: string,
  isSet: (name: string) => boolean,
): { zone: string | undefined; ttlSeconds: number } {
  const ttlMs = parseDurationMs('dns-ttl', ttlText);
  if (ttlMs < 1000 || ttlMs % 1000 !== 0 || ttlMs > MAX_DNS_TTL_SECONDS * 1000) {
    throw new ConfigError(`--dns-ttl: ${JSON.stringify(ttlText)} must be whole seconds from 1s to ${MAX_DNS_TTL_SECONDS}s (DNS TTLs count in seconds)`);
  }
  if (format !== 'skydns') {
    for (const flag of ['dns-zone', 'dns-ttl']) {
      if (isSet(flag)) throw new ConfigError(`--${flag} applies only to --value-format skydns`);
    }
    return { zone: undefined, ttlSeconds: ttlMs / 1000 };
  }
  if (zone === '') throw new ConfigError('--dns-zone is required with --value-format skydns (example: svc.example.org)');
  const why = dnsZoneProblem(zone);
  if (why !== undefined) throw new ConfigError(`--dns-zone: ${JSON.stringify(zone)} ${why}`);
  for (const flag of ['key-template', 'value-template']) {
    if (isSet(flag)) throw new ConfigError(`--${flag} does not apply to --value-format skydns (CoreDNS fixes the key layout and the value)`);
  }
  const zonePath = skydnsZonePath(zone) + '/';
  const root = normalizeKeyRoot(keyRootText);
  if (!zonePath.startsWith(root)) {
    throw new ConfigError(`--key-root: ${JSON.stringify(keyRootText)} must be a prefix of ${zonePath} with --value-format skydns (e.g. / or /skydns/)`);
  }
  return { zone, ttlSeconds: ttlMs / 1000 };
}

function parseGrantsFlag(text: string): Map<string, string[]> {
  const { grants, problems } = parseStaticGrants(text);
  if (problems.length > 0) throw new ConfigError(`--grants: ${problems.join('; ')} (example: team-a=search,web;platform=*)`);
  return grants;
}

/** "host:port", ":port" or "[::1]:port". */
export function parseListenAddress(address: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(address);
  const port = Number(match?.[3]);
  if (match === null || port > 65535) {
    throw new ConfigError(`--metrics-address: ${JSON.stringify(address)} must be host:port (example: 0.0.0.0:8080)`);
  }
  const host = match[1] ?? match[2] ?? '';
  return { host: host === '' ? '0.0.0.0' : host, port };
}
