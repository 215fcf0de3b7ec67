import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  CANCELLING,
  diffRows,
  filterRuns,
  isLive,
  normalizeCounts,
  progressOf,
  runRow,
  sortRuns,
  stateClass
} from '../src/model';
import { RUN_STATES } from '../src/types';
import { counts, run } from './fixtures';

describe('states', () => {
  it('maps every state to its own CSS class and anything else to unknown', () => {
    const classes = RUN_STATES.map(stateClass);
    assert.deepEqual(classes, [
      'nbtasks-state-pending',
      'nbtasks-state-running',
      'nbtasks-state-done',
      'nbtasks-state-failed',
      'nbtasks-state-cancelled',
      'nbtasks-state-lost'
    ]);
    assert.equal(stateClass('exploded'), 'nbtasks-state-unknown');
    assert.equal(stateClass(''), 'nbtasks-state-unknown');
  });

  it('calls pending and running live, the rest not', () => {
    assert.deepEqual(
      RUN_STATES.filter(isLive),
      ['pending', 'running']
    );
  });
});

describe('normalizeCounts', () => {
  it('fills missing keys and drops bad values', () => {
    assert.deepEqual(normalizeCounts({ done: 3, failed: -1, running: NaN } as never), counts({ done: 3 }));
    assert.deepEqual(normalizeCounts(undefined), counts());
  });
});

describe('progressOf', () => {
  it('measures units that ran to an end against the known total', () => {
    const p = progressOf(counts({ done: 3, failed: 1, cancelled: 1, running: 2, queued: 3 }), 10);
    assert.equal(p.total, 10);
    assert.equal(p.finished, 4);
    assert.equal(p.fraction, 0.4);
    assert.equal(p.percent, '40%');
    assert.deepEqual(p.widths, { done: 30, failed: 10, cancelled: 10, running: 20 });
    assert.equal(p.label, '4 / 10 · 1 failed · 1 cancelled');
  });

  it('reads a run cancelled early as far from complete, like the notebook widget', () => {
    const p = progressOf(counts({ done: 14, cancelled: 386 }), 400, 'cancelled');
    assert.equal(p.label, '14 / 400 · 386 cancelled');
    assert.equal(p.percent, '3%');
  });

  it('uses the counts when the total lags behind them', () => {
    const p = progressOf(counts({ done: 4, running: 2 }), 3);
    assert.equal(p.total, 6);
    assert.equal(p.percent, '66%');
  });

  it('does not count retries as units', () => {
    const p = progressOf(counts({ done: 2, retried: 5 }), 2);
    assert.equal(p.fraction, 1);
    assert.equal(p.label, '2 / 2');
  });

  it('reads an empty live run as 0% and an empty ended run as complete', () => {
    assert.equal(progressOf(counts(), 0, 'running').fraction, 0);
    assert.equal(progressOf(counts(), 0, 'pending').percent, '0%');
    assert.equal(progressOf(counts(), 0, 'done').percent, '100%');
    assert.equal(progressOf(counts(), 0).fraction, 0);
    const p = progressOf(counts(), 0, 'done');
    assert.deepEqual(p.widths, { done: 0, failed: 0, cancelled: 0, running: 0 });
  });

  it('rounds segment widths to a tenth of a percent', () => {
    assert.equal(progressOf(counts({ done: 1 }), 3).widths.done, 33.3);
  });
});

describe('runRow', () => {
  it('formats what the list prints', () => {
    const row = runRow(run());
    assert.equal(row.id, 'r1');
    assert.equal(row.name, 'square');
    assert.equal(row.stateLabel, 'running');
    assert.equal(row.stateClass, 'nbtasks-state-running');
    assert.equal(row.elapsed, '12 s');
    assert.equal(row.progress.label, '2 / 10');
    assert.equal(row.canCancel, true);
    assert.equal(row.cancelling, false);
  });

  it('says cancelling… once asked, locally or by the server, and hides Cancel', () => {
    for (const row of [runRow(run(), true), runRow(run({ cancel_requested: true }))]) {
      assert.equal(row.stateLabel, CANCELLING);
      assert.equal(row.cancelling, true);
      assert.equal(row.canCancel, false);
      assert.equal(row.stateClass, 'nbtasks-state-running');
    }
  });

  it('shows the final state of an ended run even if a cancel was asked', () => {
    const row = runRow(run({ state: 'cancelled', cancel_requested: true }), true);
    assert.equal(row.stateLabel, 'cancelled');
    assert.equal(row.cancelling, false);
    assert.equal(row.canCancel, false);
  });

  it('falls back to the id for a nameless run and keeps the error', () => {
    const row = runRow(run({ name: '', state: 'failed', error: 'boom', notebook: null }));
    assert.equal(row.name, 'r1');
    assert.equal(row.error, 'boom');
    assert.equal(row.notebook, '');
    assert.equal(row.live, false);
  });
});

describe('filterRuns and sortRuns', () => {
  const runs = [
    run({ id: 'a', name: 'load', state: 'done', notebook: 'etl.ipynb', submitted: 10 }),
    run({ id: 'b', name: 'fit', state: 'running', notebook: 'model.ipynb', submitted: 30 }),
    run({ id: 'c', name: 'plot', state: 'failed', notebook: null, submitted: 20 }),
    run({ id: 'd', name: 'ghost', state: 'lost', notebook: 'etl.ipynb', submitted: 20 }),
    run({ id: 'e', name: 'wait', state: 'pending', submitted: 40 })
  ];
  const ids = (list: { id: string }[]) => list.map(r => r.id);

  it('filters by state group', () => {
    assert.deepEqual(ids(filterRuns(runs, 'all')), ['a', 'b', 'c', 'd', 'e']);
    assert.deepEqual(ids(filterRuns(runs, 'live')), ['b', 'e']);
    assert.deepEqual(ids(filterRuns(runs, 'finished')), ['a', 'c', 'd']);
    assert.deepEqual(ids(filterRuns(runs, 'failed')), ['c', 'd']);
  });

  it('filters by text in the name or notebook, any case', () => {
    assert.deepEqual(ids(filterRuns(runs, 'all', 'ETL')), ['a', 'd']);
    assert.deepEqual(ids(filterRuns(runs, 'all', ' fi ')), ['b']);
    assert.deepEqual(ids(filterRuns(runs, 'finished', 'etl')), ['a', 'd']);
  });

  it('sorts newest first, ties by id, without touching the input', () => {
    assert.deepEqual(ids(sortRuns(runs)), ['e', 'b', 'c', 'd', 'a']);
    assert.deepEqual(ids(runs), ['a', 'b', 'c', 'd', 'e']);
  });
});

describe('diffRows', () => {
  const rows = (...list: ReturnType<typeof run>[]) => list.map(r => runRow(r));

  it('finds added, removed and changed rows and the new order', () => {
    const before = rows(run({ id: 'a' }), run({ id: 'b' }), run({ id: 'c' }));
    const after = rows(
      run({ id: 'd' }),
      run({ id: 'a' }),
      run({ id: 'c', counts: counts({ done: 10 }), state: 'done' })
    );
    assert.deepEqual(diffRows(before, after), {
      added: ['d'],
      removed: ['b'],
      changed: ['c'],
      order: ['d', 'a', 'c']
    });
  });

  it('finds nothing when a poll changes nothing', () => {
    const list = rows(run({ id: 'a' }), run({ id: 'b' }));
    assert.deepEqual(diffRows(list, rows(run({ id: 'a' }), run({ id: 'b' }))), {
      added: [],
      removed: [],
      changed: [],
      order: ['a', 'b']
    });
  });

  it('sees an elapsed time or a cancel as a change', () => {
    const before = rows(run({ id: 'a' }));
    assert.deepEqual(diffRows(before, rows(run({ id: 'a', elapsed: 99 }))).changed, ['a']);
    assert.deepEqual(diffRows(before, [runRow(run({ id: 'a' }), true)]).changed, ['a']);
  });

  it('keeps the first of a run listed twice', () => {
    const twice = rows(run({ id: 'a' }), run({ id: 'a', elapsed: 3 }));
    assert.deepEqual(diffRows([], twice), { added: ['a'], removed: [], changed: [], order: ['a'] });
  });

  it('handles an empty list on either side', () => {
    const list = rows(run({ id: 'a' }));
    assert.deepEqual(diffRows(list, []).removed, ['a']);
    assert.deepEqual(diffRows([], list).added, ['a']);
  });
});
