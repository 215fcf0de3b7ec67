/** The stacked progress bar (done, failed, cancelled, running) shared by runs and tree rows. */

import { h, setText } from './dom';
import { Progress } from './model';

const SEGMENTS = ['done', 'failed', 'cancelled', 'running'] as const;

export function progressBar(className = ''): HTMLElement {
  const bar = h('div', {
    class: `nbtasks-progress ${className}`.trim(),
    attrs: { role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100' }
  });
  for (const segment of SEGMENTS) {
    bar.append(h('span', { class: `nbtasks-progress-${segment}` }));
  }
  return bar;
}

export function updateProgressBar(bar: HTMLElement, progress: Progress): void {
  const percent = String(Math.floor(progress.fraction * 100));
  if (bar.dataset.percent !== percent) {
    bar.dataset.percent = percent;
    bar.setAttribute('aria-valuenow', percent);
  }
  bar.title = `${progress.percent} · ${progress.label}`;
  SEGMENTS.forEach((segment, index) => {
    const el = bar.children[index] as HTMLElement;
    const width = `${progress.widths[segment]}%`;
    if (el.style.width !== width) {
      el.style.width = width;
    }
  });
}

/** A bar and its text label side by side. */
export function progressLine(className: string): { node: HTMLElement; update(progress: Progress): void } {
  const bar = progressBar(className);
  const label = h('span', { class: 'nbtasks-progress-label' });
  const node = h('div', { class: 'nbtasks-progress-line' }, bar, label);
  return {
    node,
    update(progress: Progress) {
      updateProgressBar(bar, progress);
      setText(label, progress.percent);
    }
  };
}
