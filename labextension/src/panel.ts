/**
 * The Tasks sidebar. It polls the API about once a second while it is visible (never while
 * hidden) and shows either the list of runs or one run's details, with the Cluster section
 * below. Errors from the API show as text in the panel; the next poll clears them.
 *
 *   Poller --tick--> TasksClient --> model (pure) --> RunListView | RunDetailsView
 *                                                 \-> ClusterSection
 *                                                 \-> StoreSection (every STORE_EVERY ticks; prune)
 */

import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { ApiError, describeError, TasksClient } from './api';
import { ClusterSection } from './cluster';
import { clampOffset } from './detailmodel';
import { RunDetailsView } from './details';
import { h, setText } from './dom';
import { filterRuns, isLive, normalizeCounts, RUN_FILTERS, RunFilter, runRow, sortRuns } from './model';
import { Poller } from './poller';
import { RunListView } from './runlist';
import { StoreSection } from './store';
import { PruneQuery, PruneReply, RunPage } from './types';

export interface TasksPanelOptions {
  client: TasksClient;
  /** Milliseconds between polls. */
  interval?: number;
  /** Newest runs listed. */
  runLimit?: number;
  /** Failed units per page in the details. */
  pageSize?: number;
}

type View =
  | { kind: 'list' }
  | { kind: 'details'; id: string; offset: number; failedSeen: number; unitsStale: boolean };

type ErrorSource = 'runs' | 'run' | 'units' | 'cancel';

/** The store's size changes slowly and costs the server a query: polled every this many ticks. */
const STORE_EVERY = 5;

export const EMPTY_TEXT = 'No runs yet. Submit a task from a notebook (task.submit(...)) and it shows up here.';

export class TasksPanel extends Widget {
  readonly poller: Poller;
  private readonly client: TasksClient;
  private readonly runLimit: number;
  private readonly pageSize: number;
  private view: View = { kind: 'list' };
  private page: RunPage | null = null;
  private filter: RunFilter = 'all';
  private search = '';
  /** Runs this panel asked to cancel that the server does not report as cancelling yet. */
  private readonly cancelling = new Set<string>();
  private readonly errors = new Map<ErrorSource, string>();

  private readonly errorBox = h('div', { class: 'nbtasks-error', attrs: { role: 'alert' } });
  private readonly listSection: HTMLElement;
  private readonly list: RunListView;
  private readonly empty = h('p', { class: 'nbtasks-empty', text: 'Loading…' });
  private readonly more = h('p', { class: 'nbtasks-more' });
  private readonly details: RunDetailsView;
  private readonly cluster = new ClusterSection();
  private readonly store = new StoreSection({ prune: query => this.pruneRuns(query) });
  private ticks = 0;

  constructor(options: TasksPanelOptions) {
    super();
    this.client = options.client;
    this.runLimit = options.runLimit ?? 100;
    this.pageSize = options.pageSize ?? 10;
    this.poller = new Poller(() => this.tick(), options.interval ?? 1000);
    this.addClass('nbtasks-sidebar');
    this.title.caption = 'Tasks';

    this.list = new RunListView({ open: id => this.openRun(id), cancel: id => void this.cancel(id) });
    this.details = new RunDetailsView({
      back: () => this.showList(),
      cancel: id => void this.cancel(id),
      page: offset => this.goToPage(offset)
    });

    const filter = h('select', { class: 'nbtasks-filter', title: 'Show runs', attrs: { 'aria-label': 'Show runs' } });
    for (const option of RUN_FILTERS) {
      filter.append(h('option', { text: option.label, attrs: { value: option.value } }));
    }
    filter.addEventListener('change', () => {
      this.filter = filter.value as RunFilter;
      this.renderList();
    });
    const search = h('input', {
      class: 'nbtasks-search',
      attrs: { type: 'search', placeholder: 'Filter by name or notebook', 'aria-label': 'Filter runs' }
    });
    search.addEventListener('input', () => {
      this.search = search.value;
      this.renderList();
    });

    this.listSection = h(
      'section',
      { class: 'nbtasks-list' },
      h('div', { class: 'nbtasks-toolbar' }, filter, search),
      this.empty,
      this.list.node,
      this.more
    );
    this.more.hidden = true;
    this.errorBox.hidden = true;
    this.node.append(
      h('header', { class: 'nbtasks-header' }, h('h2', { class: 'nbtasks-title', text: 'Tasks' })),
      this.errorBox,
      h('div', { class: 'nbtasks-body' }, this.listSection, this.details.node),
      this.cluster.node,
      this.store.node
    );
    this.showView();
  }

  dispose(): void {
    this.poller.stop();
    super.dispose();
  }

  /** Shows one run's details (and polls it instead of the list). */
  openRun(id: string): void {
    this.view = { kind: 'details', id, offset: 0, failedSeen: -1, unitsStale: true };
    this.details.clear(id);
    this.errors.delete('run');
    this.errors.delete('units');
    this.showView();
    this.poller.refresh();
  }

  showList(): void {
    this.view = { kind: 'list' };
    this.details.clear(null);
    this.errors.delete('run');
    this.errors.delete('units');
    this.showView();
    this.renderList();
    this.poller.refresh();
  }

  /** Asks the server to cancel a run; the row says `cancelling…` at once. */
  async cancel(id: string): Promise<void> {
    this.cancelling.add(id);
    this.renderList();
    try {
      await this.client.cancelRun(id, 'cancelled from the JupyterLab Tasks panel');
      this.setError('cancel', null);
    } catch (error) {
      this.cancelling.delete(id);
      // 409: the run ended meanwhile; the next poll shows how. Anything else is news.
      if (!(error instanceof ApiError && error.status === 409)) {
        this.setError('cancel', `Cancel failed: ${describeError(error)}`);
      }
      this.renderList();
    }
    this.poller.refresh();
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    if (this.isVisible) {
      this.poller.start();
    }
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.poller.start();
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    this.poller.stop();
  }

  protected onBeforeDetach(msg: Message): void {
    this.poller.stop();
    super.onBeforeDetach(msg);
  }

  private async tick(): Promise<void> {
    const view = this.view;
    const store = this.ticks++ % STORE_EVERY === 0 ? this.pollStore() : null;
    await Promise.all([view.kind === 'list' ? this.pollRuns() : this.pollRun(view), this.pollEngines(), store]);
  }

  private async pollStore(): Promise<void> {
    try {
      this.store.update(await this.client.storeUsage());
    } catch (error) {
      this.store.showError(describeError(error));
    }
  }

  /** Removes runs through the server; the list and the store's size follow at once. */
  private async pruneRuns(query: PruneQuery): Promise<PruneReply> {
    try {
      return await this.client.pruneRuns(query);
    } finally {
      this.ticks = 0;
      this.poller.refresh();
    }
  }

  private async pollRuns(): Promise<void> {
    try {
      const page = await this.client.listRuns({ limit: this.runLimit });
      this.page = page;
      for (const run of page.runs) {
        if (!isLive(run.state) || run.cancel_requested) {
          this.cancelling.delete(run.id);
        }
      }
      this.setError('runs', null);
      if (this.view.kind === 'list') {
        this.renderList();
      }
    } catch (error) {
      this.setError('runs', describeError(error));
      if (!this.page) {
        setText(this.empty, 'Runs cannot be listed now.');
      }
    }
  }

  private async pollRun(view: Extract<View, { kind: 'details' }>): Promise<void> {
    try {
      const run = await this.client.getRun(view.id);
      if (this.view !== view) {
        return;
      }
      if (!isLive(run.state) || run.cancel_requested) {
        this.cancelling.delete(run.id);
      }
      this.details.update(run, this.cancelling.has(run.id));
      this.setError('run', null);
      const failed = normalizeCounts(run.counts).failed;
      if (failed !== view.failedSeen || view.unitsStale) {
        await this.pollUnits(view, failed);
      }
    } catch (error) {
      if (this.view !== view) {
        return;
      }
      if (error instanceof ApiError && error.status === 404) {
        this.details.notFound(`Run ${view.id} is not in the store (any more).`);
        this.setError('run', null);
      } else {
        this.setError('run', describeError(error));
      }
    }
  }

  private async pollUnits(view: Extract<View, { kind: 'details' }>, failed: number): Promise<void> {
    try {
      const units = await this.client.listUnits(view.id, {
        state: 'failed',
        offset: view.offset,
        limit: this.pageSize
      });
      if (this.view !== view) {
        return;
      }
      const offset = clampOffset(view.offset, units.total, this.pageSize);
      if (offset !== view.offset) {
        view.offset = offset; // the page emptied: ask again for the last one next tick
        view.unitsStale = true;
        return;
      }
      this.details.updateUnits(units);
      view.failedSeen = failed;
      view.unitsStale = false;
      this.setError('units', null);
    } catch (error) {
      this.setError('units', describeError(error));
    }
  }

  private async pollEngines(): Promise<void> {
    try {
      this.cluster.update(await this.client.engines());
    } catch (error) {
      this.cluster.showError(describeError(error));
    }
  }

  private goToPage(offset: number): void {
    if (this.view.kind === 'details') {
      this.view.offset = Math.max(0, offset);
      this.view.unitsStale = true;
      this.poller.refresh();
    }
  }

  private showView(): void {
    const details = this.view.kind === 'details';
    this.node.dataset.view = this.view.kind;
    this.listSection.hidden = details;
    this.details.node.hidden = !details;
  }

  private renderList(): void {
    if (!this.page) {
      return;
    }
    const runs = sortRuns(filterRuns(this.page.runs, this.filter, this.search));
    this.list.update(runs.map(run => runRow(run, this.cancelling.has(run.id))));
    this.node.dataset.loaded = 'true';
    const text =
      this.page.runs.length === 0 ? EMPTY_TEXT : runs.length === 0 ? 'No runs match the filter.' : '';
    setText(this.empty, text);
    this.empty.hidden = !text;
    const total = Number(this.page.total) || 0;
    const moreText =
      total > this.page.runs.length ? `Showing the newest ${this.page.runs.length} of ${total} runs.` : '';
    setText(this.more, moreText);
    this.more.hidden = !moreText;
  }

  private setError(source: ErrorSource, message: string | null): void {
    if (message) {
      this.errors.set(source, message);
    } else {
      this.errors.delete(source);
    }
    const text = [...new Set(this.errors.values())].join('\n');
    setText(this.errorBox, text);
    this.errorBox.hidden = !text;
  }
}
