-- The tables of one generation of the activity feed. Not a migration: a template, for both
-- databases, applied for every new generation with {p} replaced by the generation's prefix
-- (a<number>_) and {without rowid} by SQLite's clustering on the primary key. One row per event
-- of the entity and location topics, read newest first by the primary key (time, then the event's
-- stream, subject and sequence, which make it unique), for one actor or one owner through the
-- indexes below.
create table if not exists {p}activity (
    time text not null,
    stream text not null,
    subject text not null,
    sequence bigint not null,
    event_id text not null,
    event_type text not null,
    actor text not null,
    source text not null,
    entity_ref text,
    owner text,
    causation text,
    primary key (time, stream, subject, sequence)
) {without rowid};
-- Per subject, the last sequence recorded (folding is idempotent) and the owner while it lives
-- (a deletion or rejection happened to whoever owned the entity then).
create table if not exists {p}subjects (
    stream text not null,
    subject text not null,
    sequence bigint not null,
    owner text,
    primary key (subject, stream)
) {without rowid};
-- @readers: the feeds of one actor and of one owner, in feed order. A replay builds them just
-- before readers switch over.
create index if not exists {p}activity_actor on {p}activity (actor, time desc, stream desc, subject desc, sequence desc);
create index if not exists {p}activity_owner on {p}activity (owner, time desc, stream desc, subject desc, sequence desc) where owner is not null;
