/** What the Cluster section shows: live clusters first, their engines busy or idle. Pure. */

import { basename, plural } from './format';
import { ClusterInfo, EnginesReply } from './types';

export interface EngineRow {
  id: number;
  busy: boolean;
  label: string;
  status: 'busy' | 'idle';
  detail: string;
  unitsDone: number;
}

export interface ClusterRow {
  id: string;
  live: boolean;
  title: string;
  busy: number;
  idle: number;
  summary: string;
  engines: EngineRow[];
}

export interface ClusterView {
  clusters: ClusterRow[];
  /** Clusters the store remembers that are no longer live (not listed). */
  stopped: number;
  /** `3 busy · 1 idle`, or `no engines`. */
  summary: string;
}

function clusterRow(cluster: ClusterInfo): ClusterRow {
  const engines = (Array.isArray(cluster.engines) ? cluster.engines : [])
    .map(engine => {
      const done = Number(engine.units_done) || 0;
      const where = [engine.host, engine.pid ? `pid ${engine.pid}` : ''].filter(Boolean).join(' ');
      return {
        id: Number(engine.id),
        busy: Boolean(engine.busy),
        label: `engine ${engine.id}`,
        status: engine.busy ? 'busy' : 'idle',
        detail: [where, plural(done, 'unit') + ' done'].filter(Boolean).join(' · '),
        unitsDone: done
      } as EngineRow;
    })
    .sort((a, b) => a.id - b.id);
  const busy = engines.filter(engine => engine.busy).length;
  const parts = [cluster.host || 'unknown host'];
  if (cluster.kernel_pid) {
    parts.push(`kernel ${cluster.kernel_pid}`);
  }
  if (cluster.profile) {
    // ipyparallel gives the profile's directory (`.../profile_default`): its name suffices.
    const name = basename(cluster.profile).replace(/^profile_/, '');
    parts.push(`profile ${name || cluster.profile}`);
  }
  return {
    id: String(cluster.id),
    live: Boolean(cluster.live),
    title: parts.join(' · '),
    busy,
    idle: engines.length - busy,
    summary: engines.length ? `${busy} busy · ${engines.length - busy} idle` : 'no engines',
    engines
  };
}

/** Live clusters, most recently updated first. */
export function clusterView(reply: EnginesReply | null | undefined): ClusterView {
  const all = reply && Array.isArray(reply.clusters) ? reply.clusters : [];
  const live = all
    .filter(cluster => cluster.live)
    .sort((a, b) => (Number(b.updated) || 0) - (Number(a.updated) || 0))
    .map(clusterRow);
  const busy = live.reduce((sum, cluster) => sum + cluster.busy, 0);
  const idle = live.reduce((sum, cluster) => sum + cluster.idle, 0);
  return {
    clusters: live,
    stopped: all.length - live.length,
    summary: busy + idle ? `${busy} busy · ${idle} idle` : 'no engines'
  };
}
