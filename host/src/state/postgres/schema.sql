-- The outbox and dead letters of kfp-event-router (`[state] backend = "postgres"`).
-- Run on every open, in one transaction under an advisory lock: each statement is idempotent.

-- One row: the schema version (for later migrations), and the token of the last write
-- transaction (locked by every write, which orders writers and tells a commit whose reply was
-- lost from one that failed).
CREATE TABLE IF NOT EXISTS meta (
    id smallint PRIMARY KEY CHECK (id = 1),
    schema_version integer NOT NULL,
    last_commit bigint NOT NULL DEFAULT 0
);
INSERT INTO meta (id, schema_version) VALUES (1, 1) ON CONFLICT (id) DO NOTHING;

-- Sequence numbers of accepted events: deliveries of an endpoint are made in this order.
CREATE SEQUENCE IF NOT EXISTS event_seq;

-- Each accepted event, until its last pending delivery is done. Since schema version 4 `event`
-- is a 0 byte and the router's binary record of the event; before, the event's JSON (bytea:
-- stored as serialised, NUL characters included). Both are read.
CREATE TABLE IF NOT EXISTS events (
    seq bigint PRIMARY KEY,
    accepted_ms bigint NOT NULL,
    ordering_key text NOT NULL,
    event bytea NOT NULL
);

-- One row per event and endpoint still to deliver it.
CREATE TABLE IF NOT EXISTS pending (
    endpoint text NOT NULL,
    seq bigint NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    first_attempt_ms bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (endpoint, seq)
);
CREATE INDEX IF NOT EXISTS pending_seq ON pending (seq);

-- Source positions, e.g. the resourceVersion of each watched namespace.
CREATE TABLE IF NOT EXISTS checkpoints (
    key text PRIMARY KEY,
    value text NOT NULL
);

-- What the enrich stage last saw of each Workflow, for events derived from its status.
CREATE TABLE IF NOT EXISTS workflows (
    uid text PRIMARY KEY,
    state bytea NOT NULL
);

-- Deliveries given up: `letter` is the JSON a line of dead-letter.jsonl holds.
CREATE TABLE IF NOT EXISTS dead_letters (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL,
    endpoint text NOT NULL,
    webhook_id text NOT NULL,
    letter text NOT NULL
);

-- Since schema version 2: which replica delivers which workflows, when several share this
-- outbox. Workflows are hashed into 64 buckets (`hashtext(ordering_key) & 63`); a replica
-- delivers the pending rows of the buckets it holds here, until `expires_at` (it renews them
-- well before). A bucket whose claim has expired may be taken by any replica.
CREATE TABLE IF NOT EXISTS delivery_claims (
    bucket integer PRIMARY KEY,
    owner text NOT NULL,
    expires_at timestamptz NOT NULL
);

-- The replicas that deliver, each until `expires_at` (renewed with its claims): how many
-- share the buckets, so that each takes its fair share.
CREATE TABLE IF NOT EXISTS delivery_replicas (
    owner text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);

-- A router older than version 2 delivers without claims: it refuses a database a newer
-- router has opened rather than deliver the same workflows beside it.
UPDATE meta SET schema_version = 2 WHERE schema_version < 2;

-- Since schema version 3: the console's delivery history (`[server] console_history`), shared
-- by the replicas so that each shows them all: per endpoint its `keep` most recent deliveries
-- (by `time_ms`), each the JSON of one history record (text: jsonb refuses `\u0000`, which an
-- event or an answer may hold).
CREATE TABLE IF NOT EXISTS delivery_history (
    endpoint text NOT NULL,
    webhook_id text NOT NULL,
    time_ms bigint NOT NULL,
    record text NOT NULL,
    PRIMARY KEY (endpoint, webhook_id)
);
CREATE INDEX IF NOT EXISTS delivery_history_recent ON delivery_history (endpoint, time_ms);

-- A router older than version 3 keeps its history in its own state folder: it refuses a
-- database a newer router has opened rather than deliver beside it out of the shared history.
UPDATE meta SET schema_version = 3 WHERE schema_version < 3;

-- Since schema version 4: events are written as binary records (`events.event`, above), which
-- routers of version 3 cannot read; they refuse the database instead.
UPDATE meta SET schema_version = 4 WHERE schema_version < 4;
