/** The Cluster section: live clusters and their engines, busy or idle. */

import { h, setText } from './dom';
import { clusterView } from './clustermodel';
import { plural } from './format';
import { EnginesReply } from './types';

export class ClusterSection {
  readonly node: HTMLElement;
  private readonly summary = h('span', { class: 'nbtasks-cluster-summary' });
  private readonly body = h('div', { class: 'nbtasks-cluster-body' });
  private readonly error = h('p', { class: 'nbtasks-cluster-error' });
  private signature: string | null = null;

  constructor() {
    this.node = h(
      'section',
      { class: 'nbtasks-cluster' },
      h('div', { class: 'nbtasks-section-head' }, h('h3', { class: 'nbtasks-section-title', text: 'Cluster' }), this.summary),
      this.error,
      this.body
    );
    this.error.hidden = true;
    this.body.append(h('p', { class: 'nbtasks-cluster-empty', text: 'Loading…' }));
  }

  showError(message: string | null): void {
    setText(this.error, message ?? '');
    this.error.hidden = !message;
  }

  update(reply: EnginesReply): void {
    this.showError(null);
    const view = clusterView(reply);
    setText(this.summary, view.summary);
    const signature = JSON.stringify(view);
    if (signature === this.signature) {
      return;
    }
    this.signature = signature;
    const nodes: Node[] = [];
    if (view.clusters.length === 0) {
      nodes.push(h('p', { class: 'nbtasks-cluster-empty', text: 'No cluster running.' }));
    }
    for (const cluster of view.clusters) {
      nodes.push(
        h(
          'div',
          { class: 'nbtasks-cluster-group', data: { clusterId: cluster.id } },
          h(
            'div',
            { class: 'nbtasks-cluster-title', title: cluster.id },
            h('span', { text: cluster.title }),
            h('span', { class: 'nbtasks-cluster-counts', text: cluster.summary })
          ),
          h(
            'ul',
            { class: 'nbtasks-engines' },
            ...cluster.engines.map(engine =>
              h(
                'li',
                {
                  class: `nbtasks-engine nbtasks-engine-${engine.status}`,
                  data: { engineId: String(engine.id), busy: String(engine.busy) },
                  title: engine.detail
                },
                h('span', { class: 'nbtasks-engine-dot' }),
                h('span', { class: 'nbtasks-engine-name', text: engine.label }),
                h('span', { class: 'nbtasks-engine-status', text: engine.status }),
                h('span', { class: 'nbtasks-engine-detail', text: engine.detail })
              )
            )
          )
        )
      );
    }
    if (view.stopped) {
      nodes.push(h('p', { class: 'nbtasks-cluster-stopped', text: `${plural(view.stopped, 'stopped cluster')} not shown.` }));
    }
    this.body.replaceChildren(...nodes);
  }
}
