// The command line's surface: every flag, with its default, help text and environment
// variable. config.ts parses them; the chart and README tests check them against this table.

export type Command = 'run' | 'reconcile' | 'list';
export const commands: readonly Command[] = ['run', 'reconcile', 'list'];

export type FlagKind = 'string' | 'boolean';

export interface FlagSpec {
  readonly name: string;
  readonly kind: FlagKind;
  readonly description: string;
  /** Default shown in --help; undefined means unset. */
  readonly default?: string;
  /** Commands the flag applies to; absent = all. */
  readonly commands?: readonly Command[];
}

/** Every flag, in --help order. Each is also read from ETCD_REGISTRAR_<FLAG_IN_UPPER_SNAKE>. */
export const flagSpecs: readonly FlagSpec[] = [
  { name: 'kubeconfig', kind: 'string', description: 'kubeconfig file; default: $KUBECONFIG, then ~/.kube/config, then in-cluster config' },
  { name: 'etcd-endpoints', kind: 'string', default: 'http://127.0.0.1:2379', description: 'comma-separated etcd client URLs of the registry etcd' },
  { name: 'etcd-ca-file', kind: 'string', description: 'CA bundle that verifies the etcd server certificate' },
  { name: 'etcd-cert-file', kind: 'string', description: 'client certificate for etcd mTLS' },
  { name: 'etcd-key-file', kind: 'string', description: 'client private key for etcd mTLS' },
  { name: 'etcd-server-name', kind: 'string', description: 'server name to verify in the etcd certificate (default: the endpoint host)' },
  { name: 'etcd-username', kind: 'string', description: 'etcd user (etcd authentication)' },
  { name: 'etcd-password-file', kind: 'string', description: 'file holding the etcd password' },
  { name: 'etcd-call-timeout', kind: 'string', default: '5s', description: 'deadline of every etcd call' },
  { name: 'etcd-credential-refresh-interval', kind: 'string', default: '10s', description: 'how often the etcd CA, certificate, key and password files are re-read, so rotated files apply without a restart' },
  { name: 'environment', kind: 'string', default: '', description: 'environment name used in keys (e.g. PRE, PROD); pods may override it by annotation' },
  { name: 'owner-id', kind: 'string', default: 'etcd-registrar', description: 'identity of this installation; keys on its data lease are the only ones it changes' },
  { name: 'owner-record-prefix', kind: 'string', default: '/etcd-registrar/owners/', description: 'etcd prefix of the owner records that hold each owner\'s data lease id' },
  { name: 'lease-ttl', kind: 'string', default: '30s', description: 'TTL of the data lease: how long keys outlive every replica being gone' },
  { name: 'leader-election', kind: 'string', default: 'true', description: 'elect one writer among the replicas of this owner; standbys keep the cache warm and the lease alive', commands: ['run'] },
  { name: 'election-ttl', kind: 'string', default: '5s', description: 'TTL of each replica\'s campaign lease: how long a vanished leader blocks a standby (SIGTERM resigns at once)', commands: ['run'] },
  { name: 'reconcile-interval', kind: 'string', default: '60s', description: 'period of the full reconcile of etcd against the pods' },
  { name: 'full-read-interval', kind: 'string', default: '10m', description: 'how often a reconcile reads every key under the key root; the others read only the directories that hold this owner\'s keys or wanted keys (0 = every reconcile)' },
  { name: 'namespaces', kind: 'string', default: '', description: 'comma-separated namespaces to watch; empty = all namespaces' },
  { name: 'label-selector', kind: 'string', description: 'only watch pods matching this label selector' },
  { name: 'kube-content-type', kind: 'string', default: 'protobuf', description: 'protobuf or json: how pods, nodes and namespaces are listed and watched (protobuf, as Kubernetes\' own controllers read them, decodes only the fields used; json is the fallback)' },
  { name: 'annotation-prefix', kind: 'string', default: 'etcd-registrar.io/', description: 'prefix of the pod annotations' },
  { name: 'service-grants', kind: 'string', default: 'open', description: 'off, open or strict: strict registers a service only in namespaces granted it (Namespace annotation <annotation-prefix>allowed-services or --grants); open registers ungranted claims with a warning' },
  { name: 'grants', kind: 'string', default: '', description: 'static service grants, merged with the Namespace annotations: "namespace=service,service;namespace=*" (a trailing * matches a prefix)' },
  { name: 'key-root', kind: 'string', default: '/', description: 'every key written lives under this prefix; nothing outside it is ever read, written or deleted' },
  { name: 'key-template', kind: 'string', default: '/{service}_{environment}/{ip}-{port}', description: 'key template; placeholders {service} {environment} {ip} {port} {namespace} {pod} {node} {zone} ({zone}: the topology.kubernetes.io/zone label of the pod\'s node; nodes are then watched)' },
  { name: 'value-template', kind: 'string', default: '{ip}:{port}', description: 'value template (same placeholders; IPv6 {ip} is bracketed)' },
  { name: 'value-format', kind: 'string', default: 'template', description: 'template (use --value-template), json (host, port, service, environment, pod, namespace, node, zone; nodes are then watched) or skydns (CoreDNS etcd plugin layout; needs --dns-zone)' },
  { name: 'dns-zone', kind: 'string', default: '', description: 'with --value-format skydns: the zone CoreDNS serves; keys are /skydns/<zone reversed>/<environment>/<service>/<ip>-<port>, so <service>.<environment>.<zone> resolves (--key-root must be a prefix of that path)' },
  { name: 'dns-ttl', kind: 'string', default: '5s', description: 'with --value-format skydns: the record TTL written into each value (whole seconds)' },
  { name: 'policy', kind: 'string', default: 'sync', description: 'sync (create, update, delete) or upsert-only (never delete)' },
  { name: 'max-delete-share', kind: 'string', default: '0.5', description: 'a reconcile that would delete more than this share of the owned keys is refused' },
  { name: 'force-deletes', kind: 'boolean', default: 'false', description: 'apply a reconcile even when it exceeds --max-delete-share' },
  { name: 'max-batch-keys', kind: 'string', default: '1000', description: 'most keys one worker batch plans and writes together' },
  { name: 'max-inflight-batches', kind: 'string', default: '4', description: 'most batches written to etcd at once' },
  { name: 'dry-run', kind: 'boolean', default: 'false', description: 'plan and log changes without writing to etcd' },
  { name: 'once', kind: 'boolean', default: 'false', description: 'run one reconcile pass and exit', commands: ['reconcile'] },
  { name: 'metrics-address', kind: 'string', default: '0.0.0.0:8080', description: 'listen address of /healthz, /readyz and /metrics; empty disables', commands: ['run'] },
  { name: 'log-level', kind: 'string', default: 'info', description: 'fatal, error, warn, info, debug or trace (audit records are always written)' },
  { name: 'output', kind: 'string', default: 'table', description: 'table or json', commands: ['list', 'reconcile'] },
];

export function envName(flag: string): string {
  return `ETCD_REGISTRAR_${flag.toUpperCase().replaceAll('-', '_')}`;
}

export function helpText(): string {
  const lines = [
    'Usage: etcd-registrar <command> [flags]',
    '',
    'Commands:',
    '  run                          run the controller',
    '  reconcile --once [--dry-run] one reconcile pass: print the plan, apply it unless --dry-run, exit',
    '  list                         list the registrations this owner holds, with their pods and state',
    '',
    'Flags (each also settable as ETCD_REGISTRAR_<FLAG_IN_UPPER_SNAKE>):',
  ];
  for (const spec of flagSpecs) {
    const arg = spec.kind === 'string' ? ' value' : '';
    const def = spec.default !== undefined && spec.default !== '' ? ` (default ${JSON.stringify(spec.default)})` : '';
    lines.push(`  --${spec.name}${arg}`.padEnd(32) + ` ${spec.description}${def}`);
  }
  return lines.join('\n');
}
