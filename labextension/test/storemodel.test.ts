import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { Requester, TasksClient } from '../src/api';
import { formatBytes, pruneQuery, pruneQuestion, prunedMessage, storeView } from '../src/storemodel';
import { StoreUsage } from '../src/types';

function usage(partial: Partial<StoreUsage> = {}): StoreUsage {
  return { store: '/data/runs.db', runs: 3, results: 12_345_678, database: 13_000_000, limit: 10e9, ...partial };
}

describe('formatBytes', () => {
  it('counts in powers of 1000, as the command line does', () => {
    assert.equal(formatBytes(0), '0 B');
    assert.equal(formatBytes(999), '999 B');
    assert.equal(formatBytes(12_345_678), '12.3 MB');
    assert.equal(formatBytes(10e9), '10.0 GB');
    assert.equal(formatBytes(2.5e15), '2500.0 TB');
    assert.equal(formatBytes(null), '–');
    assert.equal(formatBytes(-1), '–');
  });
});

describe('storeView', () => {
  it('says how much the store holds against its limit', () => {
    assert.deepEqual(storeView(usage()), {
      summary: '12.3 MB of results · 3 runs',
      limit: 'limit 10.0 GB (0%)',
      fraction: 0.0012345678,
      level: 'ok'
    });
    assert.equal(storeView(usage({ runs: 1, results: 0 })).summary, '0 B of results · 1 run');
  });

  it('warns from 90% of the limit, and caps the bar at full', () => {
    assert.equal(storeView(usage({ results: 9.5e9 })).level, 'near');
    const over = storeView(usage({ results: 12e9 }));
    assert.equal(over.level, 'full');
    assert.equal(over.fraction, 1);
    assert.equal(over.limit, 'limit 10.0 GB (100%)');
    assert.equal(storeView(usage({ limit: 0, results: 0 })).level, 'full');
  });

  it('shows no bar without a limit', () => {
    const view = storeView(usage({ limit: null }));
    assert.equal(view.fraction, null);
    assert.equal(view.limit, 'no limit');
  });
});

describe('the prune form', () => {
  it('turns days (and an optional task) into the request', () => {
    assert.deepEqual(pruneQuery({ days: '30', name: '' }), { query: { older_than: 2_592_000 }, error: null });
    assert.deepEqual(pruneQuery({ days: ' 0.5 ', name: ' parallel(sim) ' }), {
      query: { older_than: 43_200, name: 'parallel(sim)' },
      error: null
    });
    assert.deepEqual(pruneQuery({ days: '0', name: '' }).query, { older_than: 0 });
  });

  it('refuses what is not an age', () => {
    for (const days of ['', 'abc', '-1', '1e9', 'Infinity']) {
      const { query, error } = pruneQuery({ days, name: '' });
      assert.equal(query, null, days);
      assert.match(error ?? '', /age in days/);
    }
    assert.match(pruneQuery({ days: '1', name: 'x'.repeat(501) }).error ?? '', /500 characters/);
  });

  it('asks a question that names what goes', () => {
    assert.equal(
      pruneQuestion({ older_than: 2_592_000 }),
      'Remove every run submitted more than 30 days ago, with its units, failures and results? ' +
        'Runs still going stay. This cannot be undone.'
    );
    assert.match(pruneQuestion({ older_than: 0, name: 'parallel(sim)' }), /^Remove every finished run of parallel\(sim\),/);
    assert.match(pruneQuestion({ older_than: 86400, name: 'sim' }), /^Remove every run of sim submitted more than 1 day ago/);
  });

  it('says what went', () => {
    assert.equal(prunedMessage({ runs: ['a', 'b'], bytes: 12_300_000, live: 0 }), 'Removed 2 runs (12.3 MB).');
    assert.equal(prunedMessage({ runs: [], bytes: 0, live: 1 }), 'No runs matched. 1 live run kept.');
  });
});

describe('TasksClient store routes', () => {
  function client(body: unknown, status = 200): { client: TasksClient; calls: { path: string; init?: RequestInit }[] } {
    const calls: { path: string; init?: RequestInit }[] = [];
    const request: Requester = async (path, init) => {
      calls.push({ path, init });
      return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
    };
    return { client: new TasksClient(request), calls };
  }

  it('reads the store usage', async () => {
    const { client: api, calls } = client(usage());
    assert.deepEqual(await api.storeUsage(), usage());
    assert.equal(calls[0].path, 'store');
    assert.equal(calls[0].init?.method, 'GET');
  });

  it('posts a prune and returns what went', async () => {
    const reply = { runs: ['r1'], bytes: 5, live: 0 };
    const { client: api, calls } = client(reply);
    assert.deepEqual(await api.pruneRuns({ older_than: 60, name: 'sim' }), reply);
    assert.equal(calls[0].path, 'store/prune');
    assert.equal(calls[0].init?.method, 'POST');
    assert.deepEqual(JSON.parse(String(calls[0].init?.body)), { older_than: 60, name: 'sim' });
  });

  it('carries the server message of a refused prune', async () => {
    const { client: api } = client({ message: 'say which runs to remove' }, 400);
    await assert.rejects(api.pruneRuns({}), { name: 'ApiError', status: 400, message: 'say which runs to remove' });
  });
});
