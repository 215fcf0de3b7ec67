import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { clampOffset, explainLines, pageInfo, treeRows, unitRow } from '../src/detailmodel';
import { counts, node, unit } from './fixtures';

describe('treeRows', () => {
  const tree = node({
    id: 1,
    name: 'pipeline',
    kind: 'sequence',
    counts: counts({ done: 5, running: 1 }),
    children: [
      node({ id: 2, name: 'load', counts: counts({ done: 1 }) }),
      node({
        id: 3,
        name: 'squares',
        kind: 'parallel',
        tag: 'fast',
        counts: counts({ done: 4, running: 1, failed: 1 }),
        children: [node({ id: 4, name: 'square', counts: counts({ done: 4, running: 1, failed: 1 }) })]
      }),
      node({ id: 5, name: 'report', kind: 'mapreduce' })
    ]
  });

  it('walks depth-first, parents before children, with depths', () => {
    const { rows, hidden } = treeRows(tree);
    assert.equal(hidden, 0);
    assert.deepEqual(
      rows.map(row => [row.id, row.name, row.depth, row.kindLabel]),
      [
        [1, 'pipeline', 0, 'sequence'],
        [2, 'load', 1, 'task'],
        [3, 'squares', 1, 'parallel'],
        [4, 'square', 2, 'task'],
        [5, 'report', 1, 'map-reduce']
      ]
    );
  });

  it('gives each node its own progress and tag', () => {
    const { rows } = treeRows(tree);
    assert.equal(rows[2].progress.label, '5 / 6 · 1 failed');
    assert.equal(rows[2].tag, 'fast');
    assert.equal(rows[4].progress.label, '0 / 0');
  });

  it('caps the rows and counts the rest', () => {
    const { rows, hidden } = treeRows(tree, 2);
    assert.deepEqual(rows.map(row => row.id), [1, 2]);
    assert.equal(hidden, 3);
  });

  it('has no rows without a tree, and survives a deep one', () => {
    assert.deepEqual(treeRows(null), { rows: [], hidden: 0 });
    let deep = node({ id: 0 });
    for (let i = 1; i < 5000; i++) {
      deep = node({ id: i, children: [deep] });
    }
    const { rows, hidden } = treeRows(deep);
    assert.equal(rows.length + hidden, 5000);
    assert.equal(rows[rows.length - 1].depth, rows.length - 1);
  });
});

describe('pageInfo and clampOffset', () => {
  it('describes a page in the middle', () => {
    const info = pageInfo(37, 10, 10, 10);
    assert.equal(info.label, '11–20 of 37');
    assert.equal(info.hasPrev, true);
    assert.equal(info.hasNext, true);
    assert.equal(info.prevOffset, 0);
    assert.equal(info.nextOffset, 20);
  });

  it('describes the first and last pages and an empty one', () => {
    assert.equal(pageInfo(37, 0, 10, 10).hasPrev, false);
    const last = pageInfo(37, 30, 10, 7);
    assert.equal(last.label, '31–37 of 37');
    assert.equal(last.hasNext, false);
    assert.equal(pageInfo(0, 0, 10, 0).label, 'none');
  });

  it('moves an offset past the end back to the last page', () => {
    assert.equal(clampOffset(40, 37, 10), 30);
    assert.equal(clampOffset(30, 37, 10), 30);
    assert.equal(clampOffset(10, 0, 10), 0);
    assert.equal(clampOffset(20, 20, 10), 10);
  });
});

describe('unitRow', () => {
  it('says where a unit ran, how long, and why it failed', () => {
    const row = unitRow(unit({ attempts: 3 }));
    assert.equal(row.title, 'square · unit 3');
    assert.equal(row.where, 'engine 1 on node1 pid 777');
    assert.equal(row.duration, '1.5 s');
    assert.equal(row.attempts, '3 attempts');
    assert.equal(row.error, 'ValueError: bad 3');
    assert.match(row.traceback ?? '', /^Traceback/);
    assert.equal(row.input, '3');
  });

  it('copes with a unit that never reached an engine', () => {
    const row = unitRow(unit({ engine: null, host: null, pid: null, duration: null, error: null, traceback: null, input: null, attempts: null, key: null }));
    assert.equal(row.where, 'engine unknown');
    assert.equal(row.duration, '');
    assert.equal(row.attempts, '');
    assert.equal(row.error, 'failed');
    assert.equal(row.traceback, null);
    assert.equal(row.input, null);
    assert.equal(row.key, ':1:3');
  });
});

describe('explainLines', () => {
  it('says per task what came from the store and why the others ran, commonest reason first', () => {
    assert.deepEqual(
      explainLines([
        { node: 2, task: 'smooth', units: 365, reused: 360, ran: { 'failed before': 1, 'input new': 4 } },
        { node: 3, task: 'report', units: 1, reused: 1, ran: {} },
        { node: 4, task: 'unused', units: 0, reused: 0, ran: {} }
      ]),
      [
        'smooth: 360 of 365 units from the store; 5 ran: input new (4); failed before (1)',
        'report: 1 of 1 units from the store'
      ]
    );
  });

  it('has nothing to say for a server that sends no explanation', () => {
    assert.deepEqual(explainLines(undefined), []);
    assert.deepEqual(explainLines([]), []);
  });
});
