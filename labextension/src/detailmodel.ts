/**
 * What the details view of one run shows: the task tree as indented rows, a page of failed
 * units, and the pager. Pure, like `model.ts`.
 */

import { formatDuration, plural } from './format';
import { Progress, progressOf } from './model';
import { TaskExplanation, TaskNode, Unit } from './types';

const KIND_LABELS: Record<string, string> = {
  leaf: 'task',
  sequence: 'sequence',
  concurrent: 'concurrent',
  parallel: 'parallel',
  mapreduce: 'map-reduce'
};

export interface TreeRow {
  id: number;
  name: string;
  kind: string;
  kindLabel: string;
  tag: string | null;
  /** Nesting level from the root (0), as met while walking the tree. */
  depth: number;
  progress: Progress;
}

/** Rows at most; a bigger tree ends with a row saying how many were left out. */
export const MAX_TREE_ROWS = 300;

/** The tree depth-first, parents before children, each row with its own progress. */
export function treeRows(tree: TaskNode | null | undefined, max = MAX_TREE_ROWS): { rows: TreeRow[]; hidden: number } {
  const rows: TreeRow[] = [];
  let hidden = 0;
  if (!tree) {
    return { rows, hidden };
  }
  // An explicit stack instead of recursion: a deep nesting cannot overflow it.
  const stack: { node: TaskNode; depth: number }[] = [{ node: tree, depth: 0 }];
  while (stack.length) {
    const { node, depth } = stack.pop()!;
    if (rows.length >= max) {
      hidden += 1;
    } else {
      const kind = String(node.kind ?? 'leaf');
      rows.push({
        id: node.id,
        name: node.name || `#${node.id}`,
        kind,
        kindLabel: KIND_LABELS[kind] ?? kind,
        tag: node.tag ?? null,
        depth,
        progress: progressOf(node.counts)
      });
    }
    const children = Array.isArray(node.children) ? node.children : [];
    for (let i = children.length - 1; i >= 0; i--) {
      stack.push({ node: children[i], depth: depth + 1 });
    }
  }
  return { rows, hidden };
}

export interface PageInfo {
  /** 1-based number of the first item shown; 0 when there are none. */
  from: number;
  to: number;
  total: number;
  hasPrev: boolean;
  hasNext: boolean;
  prevOffset: number;
  nextOffset: number;
  /** `11–20 of 37`, or `none`. */
  label: string;
}

export function pageInfo(total: number, offset: number, limit: number, shown: number): PageInfo {
  const size = Math.max(1, Math.floor(limit) || 1);
  const start = Math.max(0, Math.floor(offset) || 0);
  const count = Math.max(0, Math.max(total, 0));
  const from = shown > 0 ? start + 1 : 0;
  const to = shown > 0 ? start + shown : 0;
  return {
    from,
    to,
    total: count,
    hasPrev: start > 0,
    hasNext: start + shown < count,
    prevOffset: Math.max(0, start - size),
    nextOffset: start + size,
    label: shown > 0 ? `${from}–${to} of ${count}` : count > 0 ? `none here (of ${count})` : 'none'
  };
}

/** The offset to ask for so that the page stays inside `total` (after units disappear). */
export function clampOffset(offset: number, total: number, limit: number): number {
  const size = Math.max(1, Math.floor(limit) || 1);
  if (total <= 0 || offset <= 0) {
    return 0;
  }
  if (offset < total) {
    return offset;
  }
  return Math.floor((total - 1) / size) * size;
}

export interface UnitRow {
  key: string;
  title: string;
  where: string;
  /** '' when unknown. */
  duration: string;
  attempts: string;
  input: string | null;
  error: string;
  traceback: string | null;
  stdout: string;
  stderr: string;
}

/** A failed (or done) unit as the details view prints it. */
export function unitRow(unit: Unit): UnitRow {
  const where: string[] = [];
  if (unit.engine !== null && unit.engine !== undefined) {
    where.push(`engine ${unit.engine}`);
  }
  if (unit.host) {
    where.push(`on ${unit.host}`);
  }
  if (unit.pid) {
    where.push(`pid ${unit.pid}`);
  }
  const attempts = Number(unit.attempts) || 0;
  return {
    key: `${unit.key ?? ''}:${unit.node}:${unit.unit}`,
    title: `${unit.task || 'task'} · unit ${unit.unit}`,
    where: where.join(' ') || 'engine unknown',
    duration: unit.duration === null || unit.duration === undefined ? '' : formatDuration(unit.duration),
    attempts: attempts > 1 ? plural(attempts, 'attempt') : '',
    input: unit.input ?? null,
    error: unit.error || (unit.state === 'failed' ? 'failed' : ''),
    traceback: unit.traceback || null,
    stdout: unit.stdout ?? '',
    stderr: unit.stderr ?? ''
  };
}

/**
 * Per task, what `run.explain()` prints in Python: "smooth: 364 of 365 units from the store;
 * 1 ran: input new (1)", the commonest reason first. Tasks without units are left out.
 */
export function explainLines(tasks: TaskExplanation[] | null | undefined): string[] {
  return (tasks ?? [])
    .filter(t => t.units > 0)
    .map(t => {
      const head = `${t.task}: ${t.reused} of ${t.units} units from the store`;
      const reasons = Object.entries(t.ran ?? {}).sort((a, b) => b[1] - a[1]);
      if (reasons.length === 0) {
        return head;
      }
      const why = reasons.map(([reason, n]) => `${reason} (${n})`).join('; ');
      return `${head}; ${t.units - t.reused} ran: ${why}`;
    });
}
