/**
 * The details of one run: summary, parameters, the task tree with counts per node, and the
 * failed units with their tracebacks, a page at a time. Each part is rebuilt only when what
 * it prints changed, so an opened traceback stays open while the run is polled.
 */

import { button, h, setText } from './dom';
import { formatTimestamp, plural } from './format';
import { explainLines, pageInfo, treeRows, unitRow } from './detailmodel';
import { runRow } from './model';
import { progressBar, progressLine, updateProgressBar } from './progressbar';
import { RunDetail, UnitPage } from './types';

export interface DetailsHandlers {
  back(): void;
  cancel(id: string): void;
  page(offset: number): void;
}

/** Replaces the children of `el` when `signature` differs from the last one drawn there. */
class Part {
  private signature: string | null = null;
  constructor(readonly el: HTMLElement) {}

  draw(signature: string, build: () => Node[]): void {
    if (signature === this.signature) {
      return;
    }
    this.signature = signature;
    this.el.replaceChildren(...build());
  }

  reset(): void {
    this.signature = null;
    this.el.replaceChildren();
  }
}

function section(title: string, className: string): { node: HTMLElement; heading: HTMLElement; body: HTMLElement } {
  const heading = h('h3', { class: 'nbtasks-section-title', text: title });
  const body = h('div', { class: `${className}` });
  return { node: h('div', { class: 'nbtasks-details-section' }, heading, body), heading, body };
}

export class RunDetailsView {
  readonly node: HTMLElement;
  private runId: string | null = null;
  private readonly name = h('h2', { class: 'nbtasks-details-name' });
  private readonly state = h('span', { class: 'nbtasks-run-state nbtasks-badge' });
  private readonly cancel: HTMLButtonElement;
  private readonly message = h('p', { class: 'nbtasks-details-message' });
  private readonly progress = progressLine('nbtasks-run-progress');
  private readonly counts = h('div', { class: 'nbtasks-run-counts' });
  private readonly meta = new Part(h('dl', { class: 'nbtasks-meta' }));
  private readonly runError = h('pre', { class: 'nbtasks-run-error' });
  private readonly params = section('Parameters', 'nbtasks-params');
  private readonly paramsPart = new Part(this.params.body);
  private readonly tree = section('Tasks', 'nbtasks-tree');
  private readonly treePart = new Part(this.tree.body);
  private readonly explain = section('Why units ran', 'nbtasks-explain');
  private readonly explainPart = new Part(this.explain.body);
  private readonly failures = section('Failed units', 'nbtasks-failures');
  private readonly failuresPart = new Part(this.failures.body);
  private readonly pager = h('div', { class: 'nbtasks-pager' });
  private readonly prev: HTMLButtonElement;
  private readonly next: HTMLButtonElement;
  private readonly pageLabel = h('span', { class: 'nbtasks-page-label' });
  private prevOffset = 0;
  private nextOffset = 0;

  constructor(private readonly handlers: DetailsHandlers) {
    this.cancel = button(
      'nbtasks-cancel',
      'Cancel',
      () => this.runId !== null && this.handlers.cancel(this.runId),
      'Cancel this run'
    );
    this.prev = button('nbtasks-page-prev', '‹ Newer', () => this.handlers.page(this.prevOffset));
    this.next = button('nbtasks-page-next', 'Older ›', () => this.handlers.page(this.nextOffset));
    this.pager.append(this.prev, this.pageLabel, this.next);
    this.failures.node.append(this.pager);
    const back = button('nbtasks-back', '‹ All runs', () => this.handlers.back(), 'Back to the list of runs');
    this.node = h(
      'section',
      { class: 'nbtasks-details' },
      h('div', { class: 'nbtasks-details-bar' }, back, this.cancel),
      h('div', { class: 'nbtasks-details-head' }, this.name, this.state),
      this.message,
      this.progress.node,
      this.counts,
      this.runError,
      this.meta.el,
      this.params.node,
      this.tree.node,
      this.explain.node,
      this.failures.node
    );
    this.clear(null);
  }

  /** Empties the view for another run (or none) until its first poll answers. */
  clear(id: string | null): void {
    this.runId = id;
    if (id === null) {
      delete this.node.dataset.runId;
    } else {
      this.node.dataset.runId = id;
    }
    delete this.node.dataset.state;
    setText(this.name, id ?? '');
    setText(this.state, '');
    this.state.hidden = true;
    this.cancel.hidden = true;
    this.showMessage(id === null ? '' : 'Loading…');
    this.progress.node.hidden = true;
    setText(this.counts, '');
    this.runError.hidden = true;
    for (const part of [this.meta, this.paramsPart, this.treePart, this.explainPart, this.failuresPart]) {
      part.reset();
    }
    this.params.node.hidden = true;
    this.tree.node.hidden = true;
    this.explain.node.hidden = true;
    this.failures.node.hidden = true;
  }

  /** The run is gone (or never was): say so; the back button still works. */
  notFound(message: string): void {
    const id = this.runId;
    this.clear(id);
    this.showMessage(message);
  }

  update(run: RunDetail, cancelling: boolean): void {
    if (run.id !== this.runId) {
      return;
    }
    const row = runRow(run, cancelling);
    this.node.dataset.state = row.state;
    this.node.dataset.cancelling = String(row.cancelling);
    this.showMessage('');
    setText(this.name, row.name);
    setText(this.state, row.stateLabel);
    this.state.className = `nbtasks-run-state nbtasks-badge ${row.stateClass}`;
    this.state.hidden = false;
    this.cancel.hidden = !row.canCancel;
    this.cancel.disabled = !row.canCancel;
    this.progress.node.hidden = false;
    this.progress.update(row.progress);
    const reused = row.reused ? ` · ${row.reused} reused from the store` : '';
    setText(this.counts, `${row.progress.label}${reused} · ${row.elapsed}`);
    setText(this.runError, row.error ?? '');
    this.runError.hidden = !row.error;
    this.drawMeta(run);
    this.drawParams(run.params ?? {});
    this.drawExplain(run);
    this.drawTree(run);
  }

  updateUnits(page: UnitPage): void {
    const units = Array.isArray(page.units) ? page.units : [];
    const info = pageInfo(page.total, page.offset, page.limit, units.length);
    this.failures.node.hidden = info.total === 0;
    setText(this.failures.heading, `Failed units (${info.total})`);
    this.prevOffset = info.prevOffset;
    this.nextOffset = info.nextOffset;
    this.prev.disabled = !info.hasPrev;
    this.next.disabled = !info.hasNext;
    this.pager.hidden = !info.hasPrev && !info.hasNext;
    setText(this.pageLabel, info.label);
    const rows = units.map(unitRow);
    this.failuresPart.draw(JSON.stringify([page.offset, rows]), () =>
      rows.map(unit =>
        h(
          'div',
          { class: 'nbtasks-unit', data: { unitKey: unit.key } },
          h(
            'div',
            { class: 'nbtasks-unit-head' },
            h('span', { class: 'nbtasks-unit-title', text: unit.title }),
            h('span', { class: 'nbtasks-unit-where', text: unit.where }),
            unit.duration && h('span', { class: 'nbtasks-unit-duration', text: unit.duration }),
            unit.attempts && h('span', { class: 'nbtasks-unit-attempts', text: unit.attempts })
          ),
          h('pre', { class: 'nbtasks-unit-error', text: unit.error }),
          unit.traceback && disclosure('Traceback', unit.traceback, 'nbtasks-traceback'),
          unit.input !== null && disclosure('Input', unit.input, 'nbtasks-unit-input'),
          unit.stdout && disclosure('Output', unit.stdout, 'nbtasks-unit-stdout'),
          unit.stderr && disclosure('Errors', unit.stderr, 'nbtasks-unit-stderr')
        )
      )
    );
  }

  private showMessage(text: string): void {
    setText(this.message, text);
    this.message.hidden = !text;
  }

  private drawMeta(run: RunDetail): void {
    const items: [string, string][] = [
      ['Notebook', run.notebook ?? '–'],
      ['Submitted', formatTimestamp(run.submitted)],
      ['Ended', run.ended ? formatTimestamp(run.ended) : '–'],
      ['Units', `${run.total ?? 0}` + (run.reused ? ` (${run.reused} reused)` : '')],
      ['Retries', String(run.counts?.retried ?? 0)],
      ['Kernel', `${run.host || '?'} · pid ${run.kernel_pid ?? '?'}`],
      ['Cluster', run.cluster ?? '–']
    ];
    if (run.note) {
      items.push(['Note', run.note]);
    }
    if (run.cancel_requested) {
      items.push(['Cancel', run.cancel_reason || 'requested']);
    }
    this.meta.draw(JSON.stringify(items), () =>
      items.flatMap(([term, value]) => [h('dt', { text: term }), h('dd', { text: value, title: value })])
    );
  }

  /** Why units ran, once the run is over (while it goes, requests are still being looked up). */
  private drawExplain(run: RunDetail): void {
    const lines = run.ended ? explainLines(run.explain?.tasks) : [];
    this.explain.node.hidden = lines.length === 0;
    this.explainPart.draw(JSON.stringify(lines), () =>
      lines.map(line => h('div', { class: 'nbtasks-explain-line', text: line }))
    );
  }

  private drawParams(params: Record<string, string>): void {
    const entries = Object.entries(params);
    this.params.node.hidden = entries.length === 0;
    this.paramsPart.draw(JSON.stringify(entries), () => [
      h(
        'table',
        { class: 'nbtasks-params-table' },
        h(
          'tbody',
          {},
          ...entries.map(([name, value]) =>
            h('tr', {}, h('th', { text: name }), h('td', { text: String(value) }))
          )
        )
      )
    ]);
  }

  private drawTree(run: RunDetail): void {
    const { rows, hidden } = treeRows(run.tree);
    this.tree.node.hidden = rows.length === 0;
    this.treePart.draw(JSON.stringify([rows, hidden]), () => {
      const nodes: Node[] = rows.map(row => {
        const bar = progressBar('nbtasks-tree-progress');
        updateProgressBar(bar, row.progress);
        // A tag that only repeats the name says nothing.
        const kind = row.tag && row.tag !== row.name ? `${row.kindLabel} · ${row.tag}` : row.kindLabel;
        return h(
          'div',
          {
            class: 'nbtasks-tree-row',
            data: { nodeId: String(row.id), kind: row.kind, depth: String(row.depth) },
            attrs: { style: `--nbtasks-depth: ${row.depth}` }
          },
          h(
            'div',
            { class: 'nbtasks-tree-head' },
            h('span', { class: 'nbtasks-tree-name', text: row.name, title: row.name }),
            h('span', { class: 'nbtasks-tree-kind', text: kind })
          ),
          h(
            'div',
            { class: 'nbtasks-tree-line' },
            bar,
            h('span', { class: 'nbtasks-tree-counts', text: row.progress.label })
          )
        );
      });
      if (hidden) {
        nodes.push(h('div', { class: 'nbtasks-tree-more', text: `${plural(hidden, 'more task')} not shown` }));
      }
      return nodes;
    });
  }
}

function disclosure(summary: string, text: string, className: string): HTMLElement {
  return h('details', { class: className }, h('summary', { text: summary }), h('pre', { text }));
}
