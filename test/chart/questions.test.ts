// The Rancher form (questions.yaml) and the chart's README cannot drift from the one source
// of truth, values.schema.json (with values.yaml's defaults).
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { parse } from 'yaml';
import { chartReadmePath, renderChartReadme } from '../../scripts/chart-docs.ts';
import { chartDir } from './helm.ts';

interface Question {
  variable: string;
  type: string;
  default?: unknown;
  options?: unknown[];
  min?: number;
  subquestions?: Question[];
}

interface SchemaNode {
  type?: string | string[];
  enum?: unknown[];
  pattern?: string;
  minimum?: number;
  properties?: Record<string, SchemaNode>;
}

/** Rancher question types and the JSON type each gives the value. */
const RANCHER_TYPES: Record<string, string> = {
  string: 'string', multiline: 'string', password: 'string', secret: 'string', hostname: 'string', storageclass: 'string', pvc: 'string',
  enum: 'string', int: 'integer', boolean: 'boolean',
};

async function load(): Promise<{ questions: Question[]; schema: SchemaNode; values: unknown; chart: { annotations: Record<string, string>; kubeVersion: string } }> {
  const [questions, schema, values, chart] = await Promise.all(['questions.yaml', 'values.schema.json', 'values.yaml', 'Chart.yaml'].map((f) => readFile(join(chartDir, f), 'utf8')));
  const all: Question[] = [];
  const flatten = (list: Question[]): void => {
    for (const q of list) {
      all.push(q);
      flatten(q.subquestions ?? []);
    }
  };
  flatten((parse(questions ?? '') as { questions: Question[] }).questions);
  return { questions: all, schema: JSON.parse(schema ?? '') as SchemaNode, values: parse(values ?? ''), chart: parse(chart ?? '') as never };
}

const at = <T>(root: unknown, path: string, step: (node: unknown, key: string) => unknown): T | undefined =>
  path.split('.').reduce<unknown>((node, key) => (node === undefined ? undefined : step(node, key)), root) as T | undefined;

describe('Rancher: questions.yaml against values.schema.json', () => {
  test('every question is a value of the schema, with a compatible type, options, bounds and the same default', async () => {
    const { questions, schema, values } = await load();
    assert.ok(questions.length >= 10, 'the form covers the important values');
    const problems: string[] = [];
    for (const q of questions) {
      const node = at<SchemaNode>(schema, q.variable, (n, k) => (n as SchemaNode).properties?.[k]);
      if (node === undefined) {
        problems.push(`${q.variable}: not in values.schema.json`);
        continue;
      }
      const jsonType = RANCHER_TYPES[q.type];
      const schemaTypes = Array.isArray(node.type) ? node.type : [node.type];
      if (jsonType === undefined) problems.push(`${q.variable}: unknown Rancher question type ${q.type}`);
      else if (!schemaTypes.includes(jsonType) && !(jsonType === 'integer' && schemaTypes.includes('number'))) {
        problems.push(`${q.variable}: question type ${q.type} gives a ${jsonType}, the schema wants ${schemaTypes.join('|')}`);
      }
      for (const option of q.options ?? []) if (node.enum !== undefined && !node.enum.includes(option)) problems.push(`${q.variable}: option ${String(option)} not in the schema's enum`);
      if (q.type === 'enum' && node.enum !== undefined && (q.options ?? []).length !== node.enum.length) problems.push(`${q.variable}: the form offers ${String(q.options)}, the schema ${String(node.enum)}`);
      if (q.min !== undefined && node.minimum !== undefined && q.min < node.minimum) problems.push(`${q.variable}: min ${q.min} below the schema's minimum ${node.minimum}`);
      // The default the form shows is the chart's own default (a list as the comma string the form gives).
      const chartDefault = at<unknown>(values, q.variable, (n, k) => (n as Record<string, unknown>)[k]);
      const asForm = Array.isArray(chartDefault) ? chartDefault.join(',') : chartDefault;
      if (q.default !== asForm) problems.push(`${q.variable}: default ${JSON.stringify(q.default)}, values.yaml has ${JSON.stringify(chartDefault)}`);
      if (typeof q.default === 'string' && q.default !== '' && node.pattern !== undefined && !new RegExp(node.pattern, 'u').test(q.default)) {
        problems.push(`${q.variable}: default ${q.default} does not match the schema's pattern`);
      }
    }
    assert.deepEqual(problems, []);
    for (const important of ['config.environment', 'etcd.endpoints', 'etcd.tls.existingSecret', 'etcd.auth.existingSecret', 'serviceGrants.mode', 'replicaCount', 'config.valueFormat']) {
      assert.ok(questions.some((q) => q.variable === important), `the form asks for ${important}`);
    }
  });

  test('Chart.yaml carries the catalog.cattle.io annotations Rancher lists and installs by', async () => {
    const { chart } = await load();
    const a = chart.annotations;
    assert.equal(a['catalog.cattle.io/display-name'], 'etcd-registrar');
    assert.equal(a['catalog.cattle.io/os'], 'linux');
    assert.equal(a['catalog.cattle.io/namespace'], 'etcd-registrar');
    assert.equal(a['catalog.cattle.io/release-name'], 'etcd-registrar');
    assert.equal(a['catalog.cattle.io/kube-version'], chart.kubeVersion, 'the same Kubernetes range as kubeVersion');
  });
});

describe('the chart README', () => {
  test('its values table is generated from values.schema.json and values.yaml (run `npm run chart-docs` after changing them)', async () => {
    const current = await readFile(chartReadmePath, 'utf8');
    assert.ok(renderChartReadme(current) === current, 'charts/etcd-registrar/README.md has drifted from values.schema.json/values.yaml: run `npm run chart-docs` and commit the result');
  });
});
