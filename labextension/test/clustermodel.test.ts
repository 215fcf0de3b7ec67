import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { clusterView } from '../src/clustermodel';
import { ClusterInfo } from '../src/types';

function cluster(partial: Partial<ClusterInfo> = {}): ClusterInfo {
  return { id: 'c1', host: 'node1', kernel_pid: 100, profile: null, engines: [], updated: 1, live: true, ...partial };
}

describe('clusterView', () => {
  it('lists live clusters, newest first, engines by id, busy or idle', () => {
    const view = clusterView({
      clusters: [
        cluster({
          id: 'old',
          updated: 5,
          engines: [{ id: 0, host: 'node1', pid: 11, busy: false, units_done: 1 }]
        }),
        cluster({
          id: 'new',
          updated: 9,
          profile: 'big',
          engines: [
            { id: 2, host: 'node2', pid: 22, busy: true, units_done: 0 },
            { id: 1, host: 'node2', pid: 21, busy: false, units_done: 7 }
          ]
        }),
        cluster({ id: 'gone', live: false, updated: 99 }),
        cluster({ id: 'dir', updated: 1, profile: '/home/me/.ipython/profile_default' })
      ]
    });
    assert.deepEqual(view.clusters.map(c => c.id), ['new', 'old', 'dir']);
    assert.equal(view.clusters[2].title, 'node1 · kernel 100 · profile default');
    assert.equal(view.stopped, 1);
    assert.equal(view.summary, '1 busy · 2 idle');
    const [first] = view.clusters;
    assert.equal(first.title, 'node1 · kernel 100 · profile big');
    assert.equal(first.summary, '1 busy · 1 idle');
    assert.deepEqual(
      first.engines.map(e => [e.id, e.status, e.detail]),
      [
        [1, 'idle', 'node2 pid 21 · 7 units done'],
        [2, 'busy', 'node2 pid 22 · 0 units done']
      ]
    );
  });

  it('says no engines when nothing is live or the reply is empty', () => {
    assert.deepEqual(clusterView({ clusters: [] }), { clusters: [], stopped: 0, summary: 'no engines' });
    assert.equal(clusterView(null).summary, 'no engines');
    assert.equal(clusterView({ clusters: [cluster()] }).clusters[0].summary, 'no engines');
  });
});
