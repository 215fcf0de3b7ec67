/**
 * The Store section: how much the run store holds against its size limit, and a form that
 * removes old runs (after a confirm dialog). The panel feeds it `GET store` replies and
 * carries out the prune; the text comes from `storemodel.ts`.
 */

import { Dialog, showDialog } from '@jupyterlab/apputils';

import { describeError } from './api';
import { button, h, setText } from './dom';
import { pruneQuery, pruneQuestion, prunedMessage, storeView } from './storemodel';
import { PruneQuery, PruneReply, StoreUsage } from './types';

export interface StoreSectionOptions {
  prune: (query: PruneQuery) => Promise<PruneReply>;
  /** Asks before removing anything; JupyterLab's dialog by default. */
  confirm?: (question: string) => Promise<boolean>;
}

async function confirmDialog(question: string): Promise<boolean> {
  const result = await showDialog({
    title: 'Remove runs from the store',
    body: question,
    buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Remove' })]
  });
  return result.button.accept;
}

export class StoreSection {
  readonly node: HTMLElement;
  private readonly summary = h('span', { class: 'nbtasks-store-summary' });
  private readonly limit = h('span', { class: 'nbtasks-store-limit' });
  private readonly fill = h('span', { class: 'nbtasks-store-fill' });
  private readonly meter = h('div', { class: 'nbtasks-store-meter', attrs: { role: 'meter' } }, this.fill);
  private readonly error = h('p', { class: 'nbtasks-store-error' });
  private readonly outcome = h('p', { class: 'nbtasks-store-outcome', attrs: { role: 'status' } });
  private readonly days = h('input', {
    class: 'nbtasks-store-days',
    attrs: { type: 'number', min: '0', step: '1', value: '30', 'aria-label': 'Age in days' }
  });
  private readonly name = h('input', {
    class: 'nbtasks-store-name',
    attrs: { type: 'text', placeholder: 'any task', 'aria-label': 'Only runs of this task (optional)' }
  });
  private readonly pruneButton: HTMLButtonElement;
  private readonly options: StoreSectionOptions;

  constructor(options: StoreSectionOptions) {
    this.options = options;
    this.pruneButton = button('nbtasks-store-prune', 'Remove…', () => void this.prune(),
      'Remove these runs with their results (asks first)');
    this.node = h(
      'section',
      { class: 'nbtasks-store' },
      h('div', { class: 'nbtasks-section-head' }, h('h3', { class: 'nbtasks-section-title', text: 'Store' }), this.summary),
      this.meter,
      this.limit,
      this.error,
      h(
        'div',
        { class: 'nbtasks-store-form' },
        h('span', { text: 'Runs older than' }),
        this.days,
        h('span', { text: 'days, of' }),
        this.name,
        this.pruneButton
      ),
      this.outcome
    );
    setText(this.summary, 'Loading…');
    this.meter.hidden = true;
    this.error.hidden = true;
    this.outcome.hidden = true;
  }

  update(usage: StoreUsage): void {
    this.showError(null);
    const view = storeView(usage);
    setText(this.summary, view.summary);
    setText(this.limit, view.limit);
    this.node.dataset.level = view.level;
    this.node.dataset.results = String(usage.results);
    this.meter.hidden = view.fraction === null;
    const percent = `${Math.round((view.fraction ?? 0) * 100)}%`;
    if (this.fill.style.width !== percent) {
      this.fill.style.width = percent;
    }
  }

  showError(message: string | null): void {
    setText(this.error, message ?? '');
    this.error.hidden = !message;
  }

  private say(text: string): void {
    setText(this.outcome, text);
    this.outcome.hidden = !text;
  }

  /** Checks the form, asks, removes; says what went. */
  async prune(): Promise<void> {
    const { query, error } = pruneQuery({ days: this.days.value, name: this.name.value });
    if (query === null) {
      this.say(error);
      return;
    }
    const confirm = this.options.confirm ?? confirmDialog;
    if (!(await confirm(pruneQuestion(query)))) {
      return;
    }
    this.pruneButton.disabled = true;
    try {
      this.say(prunedMessage(await this.options.prune(query)));
    } catch (failure) {
      this.say(`Removing runs failed: ${describeError(failure)}`);
    } finally {
      this.pruneButton.disabled = false;
    }
  }
}
