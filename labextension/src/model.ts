/**
 * What the run list shows, computed from API replies: states, progress, one row per run,
 * filtering and sorting, and what changed between two polls. Pure: the views in
 * `runlist.ts` and `details.ts` only copy these snapshots into the DOM.
 */

import { formatDuration, formatPercent } from './format';
import { Counts, RUN_STATES, RunState, RunSummary } from './types';

const COUNT_KEYS: readonly (keyof Counts)[] = [
  'queued',
  'running',
  'done',
  'failed',
  'retried',
  'cancelled'
];

/** Counts with every key present and non-negative (missing or bad values read 0). */
export function normalizeCounts(counts: Partial<Counts> | null | undefined): Counts {
  const out = {} as Counts;
  for (const key of COUNT_KEYS) {
    const value = counts ? Number(counts[key]) : 0;
    out[key] = Number.isFinite(value) && value > 0 ? Math.floor(value) : 0;
  }
  return out;
}

export function isRunState(value: unknown): value is RunState {
  return typeof value === 'string' && (RUN_STATES as readonly string[]).includes(value);
}

/** A run that may still change: it can be cancelled and its elapsed time grows. */
export function isLive(state: RunState | string): boolean {
  return state === 'pending' || state === 'running';
}

/** CSS class for a state badge: `nbtasks-state-<state>`, or `nbtasks-state-unknown`. */
export function stateClass(state: string): string {
  return `nbtasks-state-${isRunState(state) ? state : 'unknown'}`;
}

export interface Progress {
  /** Units the bar is measured against: the known total, or more if counts say so. */
  total: number;
  done: number;
  failed: number;
  cancelled: number;
  running: number;
  queued: number;
  /** Units that ran to an end: done + failed (cancelled ones never will, as in the
   * notebook's widget: a run cancelled at 14 of 400 reads 14 / 400, not 100%). */
  finished: number;
  /** finished / total in [0, 1]; 1 for a run that ended with no units. */
  fraction: number;
  /** `formatPercent(fraction)`. */
  percent: string;
  /** Widths of the bar's segments, in percent of the bar, rounded to 0.1. */
  widths: { done: number; failed: number; cancelled: number; running: number };
  /** `37 / 120`, then `· 2 failed`, `· 1 cancelled` when there are any. */
  label: string;
}

function width(part: number, total: number): number {
  return total > 0 ? Math.round((part / total) * 1000) / 10 : 0;
}

/**
 * Progress of a run or task node. `total` may lag the counts while units are still being
 * discovered, so the bar's measure is the larger of the two. `state` (of the run) makes an
 * ended run with nothing to count read as complete.
 */
export function progressOf(counts: Partial<Counts> | null | undefined, total = 0, state?: string): Progress {
  const c = normalizeCounts(counts);
  const finished = c.done + c.failed;
  const counted = finished + c.cancelled + c.running + c.queued;
  const known = Number.isFinite(total) && total > 0 ? Math.floor(total) : 0;
  const measure = Math.max(known, counted);
  let fraction = measure > 0 ? finished / measure : 0;
  if (measure === 0 && state !== undefined && !isLive(state) && isRunState(state)) {
    fraction = 1;
  }
  const extras: string[] = [];
  if (c.failed) {
    extras.push(`${c.failed} failed`);
  }
  if (c.cancelled) {
    extras.push(`${c.cancelled} cancelled`);
  }
  return {
    total: measure,
    done: c.done,
    failed: c.failed,
    cancelled: c.cancelled,
    running: c.running,
    queued: c.queued,
    finished,
    fraction,
    percent: formatPercent(fraction),
    widths: {
      done: width(c.done, measure),
      failed: width(c.failed, measure),
      cancelled: width(c.cancelled, measure),
      running: width(c.running, measure)
    },
    label: [`${finished} / ${measure}`, ...extras].join(' · ')
  };
}

/** One line of the run list: everything the view prints, already formatted. */
export interface RunRow {
  id: string;
  name: string;
  notebook: string;
  state: string;
  /** The badge's text: the state, or `cancelling…` once a cancel is on its way. */
  stateLabel: string;
  stateClass: string;
  live: boolean;
  /** Live and no cancel asked for yet: the Cancel button shows. */
  canCancel: boolean;
  cancelling: boolean;
  progress: Progress;
  elapsed: string;
  error: string | null;
  note: string;
  reused: number;
}

export const CANCELLING = 'cancelling…';

/**
 * The row for a run. `cancelling` is true when this panel has sent a cancel the server
 * does not report yet, so the row changes on the click, not a poll later.
 */
export function runRow(run: RunSummary, cancelling = false): RunRow {
  const state = isRunState(run.state) ? run.state : String(run.state ?? 'unknown');
  const live = isLive(state);
  const isCancelling = live && (cancelling || Boolean(run.cancel_requested));
  return {
    id: String(run.id),
    name: run.name || String(run.id),
    notebook: run.notebook ?? '',
    state,
    stateLabel: isCancelling ? CANCELLING : state,
    stateClass: stateClass(state),
    live,
    canCancel: live && !isCancelling,
    cancelling: isCancelling,
    progress: progressOf(run.counts, run.total, state),
    elapsed: formatDuration(run.elapsed),
    error: run.error ?? null,
    note: run.note ?? '',
    reused: Number(run.reused) > 0 ? Number(run.reused) : 0
  };
}

export type RunFilter = 'all' | 'live' | 'finished' | 'failed';

export const RUN_FILTERS: readonly { value: RunFilter; label: string }[] = [
  { value: 'all', label: 'All runs' },
  { value: 'live', label: 'Running' },
  { value: 'finished', label: 'Finished' },
  { value: 'failed', label: 'Failed' }
];

/** Runs that pass the state filter and whose name or notebook contains `text` (any case). */
export function filterRuns<T extends Pick<RunSummary, 'state' | 'name' | 'notebook'>>(
  runs: readonly T[],
  filter: RunFilter = 'all',
  text = ''
): T[] {
  const needle = text.trim().toLowerCase();
  return runs.filter(run => {
    const live = isLive(run.state);
    if (filter === 'live' && !live) {
      return false;
    }
    if (filter === 'finished' && live) {
      return false;
    }
    if (filter === 'failed' && run.state !== 'failed' && run.state !== 'lost') {
      return false;
    }
    if (needle) {
      const haystack = `${run.name ?? ''}\n${run.notebook ?? ''}`.toLowerCase();
      return haystack.includes(needle);
    }
    return true;
  });
}

/** Newest submitted first; ties by id so the order never flickers between polls. */
export function sortRuns<T extends Pick<RunSummary, 'id' | 'submitted'>>(runs: readonly T[]): T[] {
  return [...runs].sort((a, b) => {
    const byTime = (Number(b.submitted) || 0) - (Number(a.submitted) || 0);
    if (byTime !== 0) {
      return byTime;
    }
    return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
  });
}

/** What a new poll changes in the list shown: rows to add, drop and redraw, and the order. */
export interface ListDiff {
  added: string[];
  removed: string[];
  changed: string[];
  order: string[];
}

/** A string that differs whenever anything the row prints differs. */
export function rowSignature(row: RunRow): string {
  return JSON.stringify(row);
}

export function diffRows(shown: readonly RunRow[], next: readonly RunRow[]): ListDiff {
  const before = new Map(shown.map(row => [row.id, rowSignature(row)]));
  const order: string[] = [];
  const seen = new Set<string>();
  const added: string[] = [];
  const changed: string[] = [];
  for (const row of next) {
    if (seen.has(row.id)) {
      continue; // a run listed twice (it moved between two pages mid-poll): keep the first
    }
    seen.add(row.id);
    order.push(row.id);
    const old = before.get(row.id);
    if (old === undefined) {
      added.push(row.id);
    } else if (old !== rowSignature(row)) {
      changed.push(row.id);
    }
  }
  const removed = shown.map(row => row.id).filter(id => !seen.has(id));
  return { added, removed, changed, order };
}
