import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { basename, formatDuration, formatPercent, plural, truncate } from '../src/format';

describe('formatDuration', () => {
  it('shows tenths below ten seconds, truncated', () => {
    assert.equal(formatDuration(0), '0.0 s');
    assert.equal(formatDuration(0.44), '0.4 s');
    assert.equal(formatDuration(9.96), '9.9 s');
  });

  it('shows whole seconds, minutes, hours and days above', () => {
    assert.equal(formatDuration(10), '10 s');
    assert.equal(formatDuration(59.9), '59 s');
    assert.equal(formatDuration(60), '1 m 00 s');
    assert.equal(formatDuration(245), '4 m 05 s');
    assert.equal(formatDuration(3600), '1 h 00 m');
    assert.equal(formatDuration(2 * 3600 + 3 * 60 + 59), '2 h 03 m');
    assert.equal(formatDuration(3 * 86400 + 4 * 3600), '3 d 04 h');
  });

  it('shows a dash for no or bad values', () => {
    for (const value of [null, undefined, NaN, Infinity, -1]) {
      assert.equal(formatDuration(value as number), '–');
    }
  });
});

describe('formatPercent', () => {
  it('rounds down so that 100% means complete', () => {
    assert.equal(formatPercent(0), '0%');
    assert.equal(formatPercent(0.5), '50%');
    assert.equal(formatPercent(0.999), '99%');
    assert.equal(formatPercent(1), '100%');
  });

  it('clamps out-of-range and bad values', () => {
    assert.equal(formatPercent(-0.2), '0%');
    assert.equal(formatPercent(1.7), '100%');
    assert.equal(formatPercent(NaN), '0%');
  });
});

describe('small helpers', () => {
  it('plural', () => {
    assert.equal(plural(1, 'unit'), '1 unit');
    assert.equal(plural(0, 'unit'), '0 units');
    assert.equal(plural(2, 'child', 'children'), '2 children');
  });

  it('basename', () => {
    assert.equal(basename('a/b/c.ipynb'), 'c.ipynb');
    assert.equal(basename('c.ipynb'), 'c.ipynb');
    assert.equal(basename('dir\\nb.ipynb'), 'nb.ipynb');
    assert.equal(basename('a/b/'), 'b');
    assert.equal(basename(null), '');
  });

  it('truncate keeps one line and marks the cut', () => {
    assert.equal(truncate('short', 10), 'short');
    assert.equal(truncate('line one\n  line two', 100), 'line one line two');
    assert.equal(truncate('abcdefghij', 5), 'abcd…');
  });
});
