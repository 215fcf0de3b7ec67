CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    notebook TEXT,
    host TEXT,
    kernel_pid INTEGER,
    cluster TEXT,
    params TEXT NOT NULL,          -- JSON: parameter name -> repr
    tree TEXT NOT NULL,            -- JSON: the task tree with counts per node
    counts TEXT NOT NULL,          -- JSON: queued/running/done/failed/retried/cancelled
    total INTEGER NOT NULL DEFAULT 0,
    reused INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    error TEXT,
    submitted REAL NOT NULL,
    started REAL,
    ended REAL,
    updated REAL NOT NULL,         -- the kernel's last write: a stale live run lost its kernel
    cancel_requested REAL,         -- set by the server; the kernel cancels the run
    cancel_reason TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_time ON runs (submitted);
CREATE TABLE IF NOT EXISTS blobs (
    id INTEGER PRIMARY KEY,
    size INTEGER NOT NULL,
    data BLOB,                     -- the pickled chunk outcome, or NULL when in a file
    path TEXT                      -- file name in the results folder beside the database
);
CREATE TABLE IF NOT EXISTS parts (
    id INTEGER PRIMARY KEY,
    run TEXT NOT NULL,
    node INTEGER NOT NULL,
    task TEXT NOT NULL,
    request_key TEXT NOT NULL,     -- task code + parameters + the request's inputs
    request_seq INTEGER NOT NULL,
    start INTEGER NOT NULL,        -- units [start, stop) of the request
    stop INTEGER NOT NULL,
    offset INTEGER NOT NULL,       -- where they sit in the chunk's outcome
    label INTEGER,                 -- the unit number users see, for a one-unit request
    done INTEGER NOT NULL,         -- how many of them finished without error
    skip TEXT NOT NULL,            -- JSON: positions that failed or ran again
    attempts TEXT NOT NULL,        -- JSON: position -> attempts, when more than one
    engine INTEGER,
    host TEXT,
    pid INTEGER,
    t0 REAL NOT NULL,
    ends BLOB NOT NULL,            -- float64 array: end of each unit, seconds after t0 (+1 before)
    stdout TEXT NOT NULL,          -- the chunk's output for these units
    stderr TEXT NOT NULL,
    marks TEXT NOT NULL,           -- JSON: [[pos, out_a, out_b, err_a, err_b], ...]
    blob INTEGER NOT NULL REFERENCES blobs (id)
);
CREATE INDEX IF NOT EXISTS parts_by_key ON parts (request_key);
CREATE INDEX IF NOT EXISTS parts_by_run ON parts (run, node, request_seq, start);
CREATE TABLE IF NOT EXISTS failures (
    id INTEGER PRIMARY KEY,
    run TEXT NOT NULL,
    node INTEGER,
    task TEXT NOT NULL,
    unit INTEGER NOT NULL,
    input TEXT NOT NULL,           -- repr, shortened
    error TEXT NOT NULL,
    traceback TEXT NOT NULL,
    engine INTEGER,
    host TEXT,
    pid INTEGER,
    time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS failures_by_run ON failures (run, task, unit);
CREATE TABLE IF NOT EXISTS clusters (
    id TEXT PRIMARY KEY,
    host TEXT,
    kernel_pid INTEGER,
    profile TEXT,
    engines TEXT NOT NULL,         -- JSON list: id, host, pid, busy, units_done
    updated REAL NOT NULL
);
