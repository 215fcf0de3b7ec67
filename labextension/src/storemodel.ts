/**
 * What the Store section shows and sends: how much the run store holds against its limit,
 * and the prune form's request, confirmation and outcome. Pure: no DOM, no network.
 */

import { plural } from './format';
import { PruneQuery, PruneReply, StoreUsage } from './types';

const DAY = 86400;

/** Bytes in powers of 1000, as disks are sold (and as `python -m nbtasks.store size` prints). */
export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes) || bytes < 0) {
    return '–';
  }
  let size = bytes;
  for (const unit of ['B', 'kB', 'MB', 'GB']) {
    if (size < 1000) {
      return unit === 'B' ? `${Math.floor(size)} B` : `${size.toFixed(1)} ${unit}`;
    }
    size /= 1000;
  }
  return `${size.toFixed(1)} TB`;
}

export interface StoreView {
  /** `12.3 MB of results · 3 runs`. */
  summary: string;
  /** `limit 10.0 GB (0%)`, or `no limit`. */
  limit: string;
  /** Results over the limit, 0..1 (capped); null without a limit. */
  fraction: number | null;
  /** `near` from 90% of the limit: the oldest runs' results are about to be dropped. */
  level: 'ok' | 'near' | 'full';
}

export function storeView(usage: StoreUsage): StoreView {
  const results = Math.max(0, Number(usage.results) || 0);
  const runs = Math.max(0, Number(usage.runs) || 0);
  const summary = `${formatBytes(results)} of results · ${plural(runs, 'run')}`;
  if (usage.limit === null || usage.limit === undefined || !Number.isFinite(usage.limit)) {
    return { summary, limit: 'no limit', fraction: null, level: 'ok' };
  }
  const limit = Math.max(0, usage.limit);
  const fraction = limit > 0 ? Math.min(1, results / limit) : 1;
  const level = fraction >= 1 ? 'full' : fraction >= 0.9 ? 'near' : 'ok';
  return { summary, limit: `limit ${formatBytes(limit)} (${Math.floor(fraction * 100)}%)`, fraction, level };
}

/** The form's fields, as typed. */
export interface PruneForm {
  days: string;
  name: string;
}

/** The request for the form's fields, or what is wrong with them. */
export function pruneQuery(form: PruneForm): { query: PruneQuery; error: null } | { query: null; error: string } {
  const text = form.days.trim();
  const days = Number(text);
  if (!text || !Number.isFinite(days) || days < 0 || days > 36500) {
    return { query: null, error: 'Give the age in days: a number from 0 to 36500.' };
  }
  const query: PruneQuery = { older_than: Math.round(days * DAY) };
  const name = form.name.trim();
  if (name) {
    if (name.length > 500) {
      return { query: null, error: 'A task name is at most 500 characters.' };
    }
    query.name = name;
  }
  return { query, error: null };
}

/** The question the confirm dialog asks, naming exactly what goes. */
export function pruneQuestion(query: PruneQuery): string {
  const days = (query.older_than ?? 0) / DAY;
  const of = query.name ? ` of ${query.name}` : '';
  const which =
    days === 0
      ? `every finished run${of}`
      : `every run${of} submitted more than ${plural(Number(days.toFixed(2)), 'day')} ago`;
  return `Remove ${which}, with its units, failures and results? Runs still going stay. This cannot be undone.`;
}

/** `Removed 3 runs (12.3 MB)`, `No runs matched.`, and the live runs kept. */
export function prunedMessage(reply: PruneReply): string {
  const removed = Array.isArray(reply.runs) ? reply.runs.length : 0;
  const live = Math.max(0, Number(reply.live) || 0);
  const text = removed ? `Removed ${plural(removed, 'run')} (${formatBytes(Number(reply.bytes) || 0)}).` : 'No runs matched.';
  return live ? `${text} ${plural(live, 'live run')} kept.` : text;
}
