/**
 * Calls a tick function every `interval` ms while started. A tick never overlaps the next:
 * the next one is scheduled when the previous has finished, so a slow server slows the
 * polling down instead of piling requests up. Timers are injectable for tests.
 */

export interface Timers {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const globalTimers: Timers = {
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: handle => clearTimeout(handle as ReturnType<typeof setTimeout>)
};

export class Poller {
  private timer: unknown = null;
  private inFlight = false;
  private again = false;
  private started = false;

  constructor(
    private readonly tick: () => Promise<void>,
    readonly interval = 1000,
    private readonly timers: Timers = globalTimers
  ) {}

  get running(): boolean {
    return this.started;
  }

  /** Ticks now, then every interval. Starting a started poller does nothing. */
  start(): void {
    if (this.started) {
      return;
    }
    this.started = true;
    this.run();
  }

  /** No further ticks; one in flight finishes but schedules nothing. Idempotent. */
  stop(): void {
    this.started = false;
    this.again = false;
    this.clear();
  }

  /** Ticks as soon as possible (after the one in flight, if any), then every interval. */
  refresh(): void {
    if (!this.started) {
      return;
    }
    this.clear();
    this.run();
  }

  private clear(): void {
    if (this.timer !== null) {
      this.timers.clearTimeout(this.timer);
      this.timer = null;
    }
  }

  private schedule(ms: number): void {
    this.clear();
    this.timer = this.timers.setTimeout(() => {
      this.timer = null;
      this.run();
    }, ms);
  }

  private run(): void {
    if (this.inFlight) {
      this.again = true;
      return;
    }
    this.inFlight = true;
    this.again = false;
    let finished: Promise<void>;
    try {
      finished = Promise.resolve(this.tick());
    } catch (error) {
      finished = Promise.reject(error);
    }
    finished
      .catch(error => {
        // The tick reports its own errors; this only keeps the loop alive if it did not.
        console.error('nbtasks: poll failed', error);
      })
      .then(() => {
        this.inFlight = false;
        if (this.started) {
          this.schedule(this.again ? 0 : this.interval);
        }
      });
  }
}
