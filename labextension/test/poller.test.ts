import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { Poller, Timers } from '../src/poller';

/** Timers run by hand: `advance()` fires the pending timeout, whatever its delay. */
class ManualTimers implements Timers {
  pending = new Map<number, { callback: () => void; ms: number }>();
  private next = 1;

  setTimeout(callback: () => void, ms: number): unknown {
    const id = this.next++;
    this.pending.set(id, { callback, ms });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.pending.delete(handle as number);
  }

  get delays(): number[] {
    return [...this.pending.values()].map(t => t.ms);
  }

  advance(): void {
    const entries = [...this.pending.entries()];
    assert.equal(entries.length, 1, `expected one pending timer, found ${entries.length}`);
    const [id, timer] = entries[0];
    this.pending.delete(id);
    timer.callback();
  }
}

const settle = () => new Promise(resolve => setImmediate(resolve));

/** A tick whose calls can be finished one by one. */
function gatedTick() {
  const gates: (() => void)[] = [];
  let calls = 0;
  const tick = () => {
    calls += 1;
    return new Promise<void>(resolve => gates.push(resolve));
  };
  return {
    tick,
    get calls() {
      return calls;
    },
    finish: async () => {
      gates.shift()?.();
      await settle();
    }
  };
}

describe('Poller', () => {
  it('ticks at once on start, then every interval after each tick ends', async () => {
    const timers = new ManualTimers();
    const gate = gatedTick();
    const poller = new Poller(gate.tick, 1000, timers);
    poller.start();
    assert.equal(gate.calls, 1);
    assert.deepEqual(timers.delays, [], 'no timer while a tick is in flight');
    await gate.finish();
    assert.deepEqual(timers.delays, [1000]);
    timers.advance();
    assert.equal(gate.calls, 2);
    await gate.finish();
    assert.deepEqual(timers.delays, [1000]);
    poller.stop();
  });

  it('stops scheduling once stopped, even with a tick in flight', async () => {
    const timers = new ManualTimers();
    const gate = gatedTick();
    const poller = new Poller(gate.tick, 1000, timers);
    poller.start();
    poller.stop();
    assert.equal(poller.running, false);
    await gate.finish();
    assert.deepEqual(timers.delays, []);
    assert.equal(gate.calls, 1);
    poller.stop(); // idempotent
  });

  it('does nothing on a second start and never overlaps ticks', async () => {
    const timers = new ManualTimers();
    const gate = gatedTick();
    const poller = new Poller(gate.tick, 1000, timers);
    poller.start();
    poller.start();
    poller.refresh();
    assert.equal(gate.calls, 1);
    await gate.finish();
    // The refresh asked during the tick: the next one comes at once, not an interval later.
    assert.deepEqual(timers.delays, [0]);
    timers.advance();
    assert.equal(gate.calls, 2);
    await gate.finish();
    assert.deepEqual(timers.delays, [1000]);
    poller.stop();
  });

  it('refresh replaces the pending wait with a tick now', async () => {
    const timers = new ManualTimers();
    const gate = gatedTick();
    const poller = new Poller(gate.tick, 1000, timers);
    poller.start();
    await gate.finish();
    poller.refresh();
    assert.equal(gate.calls, 2);
    assert.deepEqual(timers.delays, []);
    await gate.finish();
    poller.stop();
    poller.refresh(); // ignored when stopped
    assert.equal(gate.calls, 2);
  });

  it('restarted while a tick is in flight, ticks again right after it', async () => {
    const timers = new ManualTimers();
    const gate = gatedTick();
    const poller = new Poller(gate.tick, 1000, timers);
    poller.start();
    poller.stop();
    poller.start();
    assert.equal(gate.calls, 1);
    await gate.finish();
    assert.deepEqual(timers.delays, [0]);
    poller.stop();
  });

  it('keeps polling after a tick throws or rejects', async () => {
    const timers = new ManualTimers();
    const original = console.error;
    console.error = () => undefined;
    try {
      let calls = 0;
      const poller = new Poller(
        () => {
          calls += 1;
          if (calls === 1) {
            throw new Error('sync');
          }
          return Promise.reject(new Error('async'));
        },
        500,
        timers
      );
      poller.start();
      await settle();
      assert.deepEqual(timers.delays, [500]);
      timers.advance();
      await settle();
      assert.equal(calls, 2);
      assert.deepEqual(timers.delays, [500]);
      poller.stop();
    } finally {
      console.error = original;
    }
  });
});
