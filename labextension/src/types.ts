/**
 * Shapes of the nbtasks REST API (`<baseUrl>nbtasks/api/`), as the server extension
 * (`nbtasks/server/`) sends them. Plain data: nothing here talks to the network.
 */

export type RunState = 'pending' | 'running' | 'done' | 'failed' | 'cancelled' | 'lost';

export const RUN_STATES: readonly RunState[] = [
  'pending',
  'running',
  'done',
  'failed',
  'cancelled',
  'lost'
];

/** Units of a run (or of one task node) per state; `retried` counts retries, not units. */
export interface Counts {
  queued: number;
  running: number;
  done: number;
  failed: number;
  retried: number;
  cancelled: number;
}

export interface RunSummary {
  id: string;
  name: string;
  notebook: string | null;
  host: string;
  kernel_pid: number;
  cluster: string | null;
  state: RunState;
  note: string;
  error: string | null;
  counts: Counts;
  /** Units known so far (grows while a run divides its input). */
  total: number;
  /** Units taken from the store instead of being run again. */
  reused: number;
  /** Epoch seconds. */
  submitted: number;
  started: number | null;
  ended: number | null;
  /** Seconds. */
  elapsed: number;
  updated: number;
  cancel_requested: boolean;
  cancel_reason: string | null;
}

export type TaskKind = 'leaf' | 'sequence' | 'concurrent' | 'parallel' | 'mapreduce';

export interface TaskNode {
  id: number;
  name: string;
  kind: TaskKind;
  tag: string | null;
  depth: number;
  counts: Counts;
  children: TaskNode[];
}

/** One task of a run: units taken from the run store, and why the others ran. */
export interface TaskExplanation {
  node: number;
  task: string;
  units: number;
  reused: number;
  /** Why units ran ("input new", "parameter sigma changed", ...) -> how many. */
  ran: Record<string, number>;
}

export interface RunDetail extends RunSummary {
  tree: TaskNode | null;
  /** Parameter name -> repr of its value. */
  params: Record<string, string>;
  /** run.explain(): absent from servers older than the store's schema 2. */
  explain?: { tasks: TaskExplanation[] };
}

export interface RunPage {
  runs: RunSummary[];
  total: number;
  offset: number;
  limit: number;
}

export interface Unit {
  task: string;
  node: number;
  unit: number;
  key: string | null;
  state: 'done' | 'failed';
  input: string | null;
  engine: number | null;
  host: string | null;
  pid: number | null;
  start: number | null;
  end: number | null;
  duration: number | null;
  attempts: number | null;
  stdout: string;
  stderr: string;
  error: string | null;
  traceback: string | null;
}

export interface UnitPage {
  units: Unit[];
  total: number;
  offset: number;
  limit: number;
}

export interface Engine {
  id: number;
  host: string;
  pid: number | null;
  busy: boolean;
  units_done: number;
}

export interface ClusterInfo {
  id: string;
  host: string;
  kernel_pid: number;
  profile: string | null;
  engines: Engine[];
  updated: number;
  live: boolean;
}

export interface EnginesReply {
  clusters: ClusterInfo[];
}

/** `GET store`: how much the run store holds. */
export interface StoreUsage {
  store: string;
  runs: number;
  /** Bytes of results kept (database and files). */
  results: number;
  /** Bytes of the database file and its write-ahead log. */
  database: number;
  /** Bytes of results allowed; null: no limit. */
  limit: number | null;
}

/** `POST store/prune`: which runs to remove (at least one of the two). */
export interface PruneQuery {
  /** Seconds: runs submitted longer ago than this. */
  older_than?: number;
  /** Only runs of this task. */
  name?: string;
}

export interface PruneReply {
  /** Ids of the runs removed. */
  runs: string[];
  /** Bytes of results removed. */
  bytes: number;
  /** Runs that matched but are live, so kept. */
  live: number;
}
