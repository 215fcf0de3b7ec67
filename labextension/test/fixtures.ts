/** Builders of API replies for the tests: a valid object with only what a test changes. */

import { Counts, RunDetail, RunSummary, TaskNode, Unit } from '../src/types';

export function counts(partial: Partial<Counts> = {}): Counts {
  return { queued: 0, running: 0, done: 0, failed: 0, retried: 0, cancelled: 0, ...partial };
}

export function run(partial: Partial<RunSummary> = {}): RunSummary {
  return {
    id: 'r1',
    name: 'square',
    notebook: 'work/analysis.ipynb',
    host: 'node1',
    kernel_pid: 4242,
    cluster: 'c1',
    state: 'running',
    note: '',
    error: null,
    counts: counts({ queued: 6, running: 2, done: 2 }),
    total: 10,
    reused: 0,
    submitted: 1000,
    started: 1001,
    ended: null,
    elapsed: 12.5,
    updated: 1013,
    cancel_requested: false,
    cancel_reason: null,
    ...partial
  };
}

export function node(partial: Partial<TaskNode> = {}): TaskNode {
  return { id: 0, name: 'root', kind: 'leaf', tag: null, depth: 0, counts: counts(), children: [], ...partial };
}

export function detail(partial: Partial<RunDetail> = {}): RunDetail {
  return { ...run(), tree: node(), params: {}, ...partial };
}

export function unit(partial: Partial<Unit> = {}): Unit {
  return {
    task: 'square',
    node: 1,
    unit: 3,
    key: 'k3',
    state: 'failed',
    input: '3',
    engine: 1,
    host: 'node1',
    pid: 777,
    start: 1002,
    end: 1003.5,
    duration: 1.5,
    attempts: 1,
    stdout: '',
    stderr: '',
    error: 'ValueError: bad 3',
    traceback: 'Traceback (most recent call last):\n  ...\nValueError: bad 3',
    ...partial
  };
}
