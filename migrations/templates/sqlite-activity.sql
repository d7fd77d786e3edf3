-- The tables of one generation of the activity feed (template: {p} is the generation's prefix,
-- a<number>_). One row per event of the entity and location topics. The feed is read newest first
-- by its primary key (time, then the event's stream, subject and sequence, which make it unique),
-- for one actor or one owner through the indexes below.
create table if not exists {p}activity (
    time text not null,
    stream text not null,
    subject text not null,
    sequence integer not null,
    event_id text not null,
    event_type text not null,
    actor text not null,
    source text not null,
    entity_ref text,
    owner text,
    causation text,
    primary key (time, stream, subject, sequence)
) without rowid;
-- Per subject, the last sequence recorded (folding is idempotent) and the owner while it lives
-- (a deletion or rejection happened to whoever owned the entity then).
create table if not exists {p}subjects (
    stream text not null,
    subject text not null,
    sequence integer not null,
    owner text,
    primary key (subject, stream)
) without rowid;
-- @readers: the feeds of one actor and of one owner (index entries carry the primary key, so a
-- page walks them in feed order). A replay builds them just before readers switch over.
create index if not exists {p}activity_actor on {p}activity (actor, time);
create index if not exists {p}activity_owner on {p}activity (owner, time) where owner is not null;
