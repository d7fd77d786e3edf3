-- The tables of one read-model generation (template: {p} is the generation's prefix, g<number>_).
-- Times are fixed-width UTC text. An entity row is small: its document lives once, in the history
-- row of its current version (joined on read); its filter keys (64-bit hashes written as words,
-- see `search::hash_token`) and search text live only in the FTS5 index, keyed by the row's id;
-- its current relations are packed in the row (see `relations`), found from their other ends
-- through endpoint keys in the same index.
create table if not exists {p}entities (
    id integer primary key,
    entity_ref text not null unique,
    uid text not null,
    kind text not null,
    namespace text not null,
    name text not null,
    sequence integer not null,
    content_hash text not null,
    location_key text not null,
    origin text not null,
    created_at text not null,
    updated_at text not null,
    owner text,
    title text,
    spec_type text,
    lifecycle text,
    relations text not null,
    facet_values text not null
);
-- `detail = column` keeps what column filters need (`keys : …`, `text : …`) and no positions.
create virtual table if not exists {p}fts using fts5 (text, keys, content = '', contentless_delete = 1, detail = column);
-- Merge segments 16 at a time instead of 4: every batch adds a segment, and with the default
-- most of the index's write time went to merging them (a query reads at most a few more).
insert into {p}fts ({p}fts, rank) values ('automerge', 16);
-- History is a rowid table: new rows append at the end of the table instead of landing all over a
-- clustered primary key. An upsert's row holds the document as the event carried it (without
-- `metadata.uid`, kept beside it) and the version's relations, packed: relations over time are
-- read from here.
create table if not exists {p}history (
    subject text not null,
    sequence integer not null,
    event_id text not null,
    event_type text not null,
    time text not null,
    source text not null,
    actor text not null,
    causation text,
    uid text,
    entity text,
    relations text,
    diff text,
    detail text
);
create unique index if not exists {p}history_subject on {p}history (subject, sequence);
create table if not exists {p}rejections (
    subject text primary key,
    entity_ref text,
    location text not null,
    origin text not null,
    document_index integer,
    problems text not null,
    conflicts_with text,
    time text not null,
    sequence integer not null
);
create index if not exists {p}rejections_entity on {p}rejections (entity_ref);
create index if not exists {p}rejections_location on {p}rejections (location);
create index if not exists {p}rejections_origin on {p}rejections (origin);
-- Value counts of the counted facet keys, over the whole catalog (`spec.type`) and within each
-- kind (`component|spec.type`), kept as entities change.
create table if not exists {p}facets (
    key text not null,
    value text not null,
    count integer not null,
    primary key (key, value)
) without rowid;
create table if not exists {p}locations (
    key text primary key,
    location_type text not null,
    target text not null,
    id text not null,
    entity_ref text not null,
    registered_at text not null
);
insert into {p}meta (key, value) values ('graph_version', 0) on conflict (key) do nothing;
-- A random identity of this generation, so cached graph answers (shared in Redis by every
-- replica, and by every deployment pointed at the same Redis) never outlive the tables they came from.
insert into {p}meta (key, value) values ('graph_epoch', abs(random() % 9000000000000000)) on conflict (key) do nothing;
-- @readers: indexes only readers need (orderings of entity lists; filters go through the FTS5
-- index). A replay fills a new generation without them and builds them, sorted, just before
-- readers switch to it.
create index if not exists {p}entities_name on {p}entities (name, entity_ref);
create index if not exists {p}entities_updated on {p}entities (updated_at, entity_ref);
-- Kind, name and namespace filters read the row's columns (see `search::plan`); a page of one kind
-- in ref order walks this index.
create index if not exists {p}entities_kind on {p}entities (kind, entity_ref);
