// bench/profile.ts's stage view: a function's inclusive time is every sample with it on the stack.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inclusiveTimes, selfTimes, type CpuProfile } from '../../bench/profile.ts';

const frame = (functionName: string): { functionName: string; url: string; lineNumber: number } => ({ functionName, url: 'file:///x/src/a.ts', lineNumber: 0 });

// root -> read -> decode; root -> read -> recurse -> recurse; root -> write
const PROFILE: CpuProfile = {
  nodes: [
    { id: 1, callFrame: frame('(root)'), children: [2, 5] },
    { id: 2, callFrame: frame('read'), children: [3, 6] },
    { id: 3, callFrame: frame('decode') },
    { id: 5, callFrame: frame('write') },
    { id: 6, callFrame: frame('recurse'), children: [7] },
    { id: 7, callFrame: frame('recurse') },
  ],
  startTime: 0,
  endTime: 5000,
  // Samples at 1, 2, 3, 4, 5 ms, each weighing 1 ms.
  samples: [3, 3, 7, 5, 2],
  timeDeltas: [1000, 1000, 1000, 1000, 1000],
};

test('inclusive time counts a function with everything beneath it, a recursive one once per sample', () => {
  const { total, rows } = inclusiveTimes(PROFILE);
  const ms = (name: string): number | undefined => rows.find((row) => row.name.startsWith(`${name} `))?.ms;
  assert.equal(total, 5);
  assert.equal(ms('(root)'), 5);
  assert.equal(ms('read'), 4);
  assert.equal(ms('decode'), 2);
  assert.equal(ms('recurse'), 1);
  assert.equal(ms('write'), 1);
  // Self time of the same samples: read's own is the one sample taken in it.
  assert.equal(selfTimes(PROFILE).rows.find((row) => row.name.startsWith('read '))?.ms, 1);
});

test('a window keeps only the samples inside it', () => {
  const { total, rows } = inclusiveTimes(PROFILE, { from: 2500, to: 4500 });
  assert.equal(total, 2);
  assert.deepEqual(new Map(rows.map((row) => [row.name.split(' ')[0], row.ms])), new Map([['(root)', 2], ['read', 1], ['recurse', 1], ['write', 1]]));
});
