import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { ApiError, describeError, queryString, Requester, TasksClient } from '../src/api';
import { detail, run } from './fixtures';

interface Call {
  path: string;
  init?: RequestInit;
}

/** A Requester that records calls and answers each with the next reply (or throws it). */
function fake(...replies: (Response | Error)[]): { request: Requester; calls: Call[] } {
  const calls: Call[] = [];
  const request: Requester = async (path, init) => {
    calls.push({ path, init });
    const reply = replies.shift();
    if (reply === undefined) {
      throw new Error('no reply left');
    }
    if (reply instanceof Error) {
      throw reply;
    }
    return reply;
  };
  return { request, calls };
}

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
}

async function failure(promise: Promise<unknown>): Promise<ApiError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof ApiError, `expected an ApiError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected a failure');
}

describe('queryString', () => {
  it('keeps defined values in order and encodes them', () => {
    assert.equal(queryString({ state: 'running', notebook: 'a b/c.ipynb', limit: 5 }), '?state=running&notebook=a%20b%2Fc.ipynb&limit=5');
    assert.equal(queryString({ state: undefined, offset: 0, x: null, y: '' }), '?offset=0');
    assert.equal(queryString({}), '');
  });
});

describe('TasksClient routes', () => {
  it('lists runs with a query', async () => {
    const page = { runs: [run()], total: 1, offset: 0, limit: 50 };
    const { request, calls } = fake(json(page));
    const reply = await new TasksClient(request).listRuns({ limit: 50, state: 'running' });
    assert.deepEqual(reply, page);
    assert.equal(calls[0].path, 'runs?limit=50&state=running');
    assert.equal(calls[0].init?.method, 'GET');
  });

  it('gets one run, its failed units and the engines, escaping the id', async () => {
    const { request, calls } = fake(
      json(detail({ id: 'a/b' })),
      json({ units: [], total: 0, offset: 10, limit: 10 }),
      json({ clusters: [] })
    );
    const client = new TasksClient(request);
    assert.equal((await client.getRun('a/b')).id, 'a/b');
    assert.equal((await client.listUnits('a/b', { state: 'failed', offset: 10, limit: 10 })).total, 0);
    assert.deepEqual(await client.engines(), { clusters: [] });
    assert.deepEqual(calls.map(c => c.path), [
      'runs/a%2Fb',
      'runs/a%2Fb/units?state=failed&offset=10&limit=10',
      'engines'
    ]);
  });

  it('posts a cancel with its reason as JSON', async () => {
    const { request, calls } = fake(json(run({ cancel_requested: true })), json(run()));
    const client = new TasksClient(request);
    assert.equal((await client.cancelRun('r1', 'too slow')).cancel_requested, true);
    await client.cancelRun('r1');
    assert.equal(calls[0].path, 'runs/r1/cancel');
    assert.equal(calls[0].init?.method, 'POST');
    assert.deepEqual(JSON.parse(String(calls[0].init?.body)), { reason: 'too slow' });
    assert.deepEqual(JSON.parse(String(calls[1].init?.body)), {});
  });
});

describe('TasksClient errors', () => {
  it("uses the server's own message", async () => {
    const { request } = fake(json({ message: 'no run xyz' }, 404));
    const error = await failure(new TasksClient(request).getRun('xyz'));
    assert.equal(error.status, 404);
    assert.equal(error.message, 'no run xyz');
    assert.equal(describeError(error), 'no run xyz');
  });

  it('explains a bare 404: the server extension is missing', async () => {
    const { request } = fake(new Response('<html>404: Not Found</html>', { status: 404 }));
    const error = await failure(new TasksClient(request).listRuns());
    assert.equal(error.status, 404);
    assert.match(error.message, /server extension/);
  });

  it('explains 403 and 500 without a body', async () => {
    const { request } = fake(new Response('', { status: 403 }), new Response('oops', { status: 500 }));
    const client = new TasksClient(request);
    assert.match((await failure(client.engines())).message, /Not authorized/);
    assert.match((await failure(client.engines())).message, /status 500/);
  });

  it('keeps the 409 of a cancel on a finished run', async () => {
    const { request } = fake(json({ message: 'run r1 already finished' }, 409));
    const error = await failure(new TasksClient(request).cancelRun('r1'));
    assert.equal(error.status, 409);
    assert.equal(error.message, 'run r1 already finished');
  });

  it('turns a network failure into status 0', async () => {
    const { request } = fake(new TypeError('Failed to fetch'));
    const error = await failure(new TasksClient(request).listRuns());
    assert.equal(error.status, 0);
    assert.equal(error.message, 'Cannot reach the Jupyter server: Failed to fetch');
  });

  it('passes an ApiError from the requester through', async () => {
    const { request } = fake(new ApiError(0, 'offline'));
    assert.equal((await failure(new TasksClient(request).engines())).message, 'offline');
  });

  it('rejects a reply that is not JSON or not the expected shape', async () => {
    const { request } = fake(
      new Response('<html>login</html>', { status: 200 }),
      json({ items: [] }),
      json([1, 2])
    );
    const client = new TasksClient(request);
    for (let i = 0; i < 3; i++) {
      const error = await failure(client.listRuns());
      assert.match(error.message, /Unexpected reply from nbtasks\/api\/runs/);
    }
  });

  it('describes anything thrown', () => {
    assert.equal(describeError(new Error('x')), 'x');
    assert.equal(describeError('plain'), 'plain');
  });
});
