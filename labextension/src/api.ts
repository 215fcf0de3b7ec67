/**
 * Client of the nbtasks REST API. It knows the routes and the reply shapes, not how to
 * reach the server: a `Requester` does that (`connection.ts` builds one from JupyterLab's
 * ServerConnection, so the token and XSRF cookie are handled there; tests pass a fake).
 * Every failure becomes an `ApiError`, so the panel has one kind of error to show.
 */

import type {
  EnginesReply,
  PruneQuery,
  PruneReply,
  RunDetail,
  RunPage,
  RunState,
  RunSummary,
  StoreUsage,
  UnitPage
} from './types';

/** Sends one request; `path` is relative to `<baseUrl>nbtasks/api/` and may hold a query. */
export type Requester = (path: string, init?: RequestInit) => Promise<Response>;

/** A request that did not give the expected reply. `status` is 0 when no reply came. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly path: string = ''
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export interface RunQuery {
  state?: RunState;
  notebook?: string;
  limit?: number;
  offset?: number;
}

export interface UnitQuery {
  state?: 'done' | 'failed';
  limit?: number;
  offset?: number;
}

/** `?a=1&b=x` from the defined values, in the given order; '' when none is defined. */
export function queryString(params: Record<string, string | number | undefined | null>): string {
  const parts: string[] = [];
  for (const [name, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === '') {
      continue;
    }
    parts.push(`${encodeURIComponent(name)}=${encodeURIComponent(String(value))}`);
  }
  return parts.length ? `?${parts.join('&')}` : '';
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The reply's own message (`{"message": ...}`, tornado's `{"reason": ...}`), if any. */
function messageOf(body: unknown): string | null {
  if (isObject(body)) {
    for (const key of ['message', 'reason', 'error']) {
      const value = body[key];
      if (typeof value === 'string' && value.trim()) {
        return value.trim();
      }
    }
  }
  return null;
}

function failureMessage(status: number, path: string, body: unknown): string {
  const own = messageOf(body);
  if (own) {
    return own;
  }
  switch (status) {
    case 401:
    case 403:
      return `Not authorized to read nbtasks/api/${path} (${status}): log in again.`;
    case 404:
      return (
        `nbtasks/api/${path} not found (404): is the nbtasks server extension enabled? ` +
        'See `jupyter server extension list`.'
      );
    default:
      return `nbtasks/api/${path} failed with status ${status}.`;
  }
}

export class TasksClient {
  constructor(private readonly request: Requester) {}

  /** Runs, newest first. */
  listRuns(query: RunQuery = {}): Promise<RunPage> {
    const path = `runs${queryString({ ...query })}`;
    return this.call(path, { method: 'GET' }, body => isObject(body) && Array.isArray(body.runs));
  }

  /** One run with its task tree and parameters. */
  getRun(id: string): Promise<RunDetail> {
    const path = `runs/${encodeURIComponent(id)}`;
    return this.call(path, { method: 'GET' }, body => isObject(body) && typeof body.id === 'string');
  }

  /** Finished units of a run (failed ones with their tracebacks), a page at a time. */
  listUnits(id: string, query: UnitQuery = {}): Promise<UnitPage> {
    const path = `runs/${encodeURIComponent(id)}/units${queryString({ ...query })}`;
    return this.call(path, { method: 'GET' }, body => isObject(body) && Array.isArray(body.units));
  }

  /** Asks the kernel that owns the run to cancel it; the reply is the run as it is now. */
  cancelRun(id: string, reason?: string): Promise<RunSummary> {
    const path = `runs/${encodeURIComponent(id)}/cancel`;
    const init: RequestInit = {
      method: 'POST',
      body: JSON.stringify(reason ? { reason } : {}),
      headers: { 'Content-Type': 'application/json' }
    };
    return this.call(path, init, body => isObject(body) && typeof body.id === 'string');
  }

  /** Clusters known to the store and their engines. */
  engines(): Promise<EnginesReply> {
    return this.call(
      'engines',
      { method: 'GET' },
      body => isObject(body) && Array.isArray(body.clusters)
    );
  }

  /** How much the run store holds, and its size limit. */
  storeUsage(): Promise<StoreUsage> {
    return this.call('store', { method: 'GET' }, body => isObject(body) && typeof body.results === 'number');
  }

  /** Removes whole runs (records and results) by age and/or task name; live runs stay. */
  pruneRuns(query: PruneQuery): Promise<PruneReply> {
    const init: RequestInit = {
      method: 'POST',
      body: JSON.stringify(query),
      headers: { 'Content-Type': 'application/json' }
    };
    return this.call('store/prune', init, body => isObject(body) && Array.isArray(body.runs));
  }

  private async call<T>(path: string, init: RequestInit, valid: (body: unknown) => boolean): Promise<T> {
    let response: Response;
    try {
      response = await this.request(path, init);
    } catch (error) {
      if (error instanceof ApiError) {
        throw error;
      }
      const detail = error instanceof Error && error.message ? `: ${error.message}` : '';
      throw new ApiError(0, `Cannot reach the Jupyter server${detail}`, path);
    }
    const text = await response.text().catch(() => '');
    let body: unknown = null;
    let parsed = false;
    if (text) {
      try {
        body = JSON.parse(text);
        parsed = true;
      } catch {
        // An HTML error page (a proxy, or tornado's default 404): reported by status below.
      }
    }
    if (!response.ok) {
      throw new ApiError(response.status, failureMessage(response.status, path, body), path);
    }
    if (!parsed || !valid(body)) {
      throw new ApiError(response.status, `Unexpected reply from nbtasks/api/${path}.`, path);
    }
    return body as T;
  }
}

/** What the panel shows for any error thrown while talking to the server. */
export function describeError(error: unknown): string {
  if (error instanceof ApiError) {
    return error.message;
  }
  if (error instanceof Error) {
    return error.message || error.name;
  }
  return String(error);
}
