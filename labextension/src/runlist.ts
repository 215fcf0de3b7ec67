/**
 * The run list: one `li.nbtasks-run[data-run-id]` per run, kept across polls. Only rows whose
 * text changed are touched and rows are moved, not rebuilt, so a Cancel button under the
 * pointer stays the same element while the list updates every second.
 */

import { button, h, setText } from './dom';
import { basename, truncate } from './format';
import { diffRows, RunRow } from './model';
import { progressBar, updateProgressBar } from './progressbar';

export interface RunListHandlers {
  open(id: string): void;
  cancel(id: string): void;
}

interface Entry {
  el: HTMLElement;
  name: HTMLElement;
  state: HTMLElement;
  notebook: HTMLElement;
  progress: HTMLElement;
  counts: HTMLElement;
  elapsed: HTMLElement;
  cancel: HTMLButtonElement;
  error: HTMLElement;
}

export class RunListView {
  readonly node: HTMLElement = h('ul', { class: 'nbtasks-runs', attrs: { 'aria-label': 'Runs' } });
  private readonly entries = new Map<string, Entry>();
  private shown: RunRow[] = [];

  constructor(private readonly handlers: RunListHandlers) {}

  get size(): number {
    return this.shown.length;
  }

  update(rows: readonly RunRow[]): void {
    const diff = diffRows(this.shown, rows);
    for (const id of diff.removed) {
      this.entries.get(id)?.el.remove();
      this.entries.delete(id);
    }
    const byId = new Map<string, RunRow>();
    for (const row of rows) {
      if (!byId.has(row.id)) {
        byId.set(row.id, row);
      }
    }
    for (const id of diff.added) {
      const entry = this.create(id);
      this.entries.set(id, entry);
      this.fill(entry, byId.get(id)!);
    }
    for (const id of diff.changed) {
      this.fill(this.entries.get(id)!, byId.get(id)!);
    }
    let cursor: ChildNode | null = this.node.firstChild;
    for (const id of diff.order) {
      const el = this.entries.get(id)!.el;
      if (el === cursor) {
        cursor = cursor.nextSibling;
      } else {
        this.node.insertBefore(el, cursor);
      }
    }
    this.shown = diff.order.map(id => byId.get(id)!);
  }

  private create(id: string): Entry {
    const entry: Entry = {
      el: h('li', { class: 'nbtasks-run', data: { runId: id }, attrs: { tabindex: '0' } }),
      name: h('span', { class: 'nbtasks-run-name' }),
      state: h('span', { class: 'nbtasks-run-state nbtasks-badge' }),
      notebook: h('div', { class: 'nbtasks-run-notebook' }),
      progress: progressBar('nbtasks-run-progress'),
      counts: h('span', { class: 'nbtasks-run-counts' }),
      elapsed: h('span', { class: 'nbtasks-run-elapsed', title: 'Elapsed' }),
      cancel: button('nbtasks-cancel', 'Cancel', () => this.handlers.cancel(id), 'Cancel this run'),
      error: h('div', { class: 'nbtasks-run-error' })
    };
    entry.el.append(
      h('div', { class: 'nbtasks-run-head' }, entry.name, entry.state),
      entry.notebook,
      entry.progress,
      h('div', { class: 'nbtasks-run-foot' }, entry.counts, entry.elapsed, entry.cancel),
      entry.error
    );
    entry.el.addEventListener('click', () => this.handlers.open(id));
    entry.el.addEventListener('keydown', event => {
      if ((event.key === 'Enter' || event.key === ' ') && event.target === entry.el) {
        event.preventDefault();
        this.handlers.open(id);
      }
    });
    return entry;
  }

  private fill(entry: Entry, row: RunRow): void {
    const { el } = entry;
    el.dataset.state = row.state;
    el.dataset.cancelling = String(row.cancelling);
    el.classList.toggle('nbtasks-live', row.live);
    el.title = `${row.name} — open details`;
    setText(entry.name, row.name);
    setText(entry.state, row.stateLabel);
    entry.state.className = `nbtasks-run-state nbtasks-badge ${row.stateClass}`;
    setText(entry.notebook, basename(row.notebook));
    entry.notebook.title = row.notebook;
    entry.notebook.hidden = !row.notebook;
    updateProgressBar(entry.progress, row.progress);
    const reused = row.reused ? ` · ${row.reused} reused` : '';
    setText(entry.counts, `${row.progress.label}${reused}`);
    setText(entry.elapsed, row.elapsed);
    entry.cancel.hidden = !row.canCancel;
    entry.cancel.disabled = !row.canCancel;
    // The first line only (`RunFailed: 3 unit(s) of ... failed`); the details show it all.
    const error = row.error ?? '';
    setText(entry.error, truncate(error.split('\n', 1)[0], 160));
    entry.error.title = error;
    entry.error.hidden = !error;
  }
}
