-- The tables of one read-model generation. Not a migration: a template applied for every new
-- generation, with {p} replaced by the generation's prefix (g<number>_). Times are stored as
-- fixed-width UTC text (2026-11-22T10:00:00.000Z), which compares correctly; documents as text,
-- which keeps authors' key order. An entity's document is stored once, in the history row of its
-- current version (joined on read); its current relations are packed in its row (see
-- `relations`), found from their other ends through endpoint keys among its filter keys.
create table if not exists {p}entities (
    entity_ref text primary key,
    uid text not null,
    kind text not null,
    namespace text not null,
    name text not null,
    sequence bigint not null,
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
    -- The values of the counted facet keys, as written: a JSON array of `key=value` texts.
    facet_values text not null,
    facet_array text[] generated always as (callboard_texts(facet_values)) stored,
    -- Filter keys (`field`, `field=value`, relation ends) as 64-bit hashes: see search::key_hash.
    search_keys bigint[] not null,
    search_text text not null,
    search_vector tsvector generated always as (to_tsvector('simple', search_text)) stored
);
create table if not exists {p}history (
    subject text not null,
    sequence bigint not null,
    event_id text not null,
    event_type text not null,
    time text not null,
    source text not null,
    actor text not null,
    causation text,
    -- For upserts: the uid (readers put it back into the document), the document as the event
    -- carried it, and the version's relations, packed: relations over time are read from here.
    uid text,
    entity text,
    relations text,
    diff text,
    detail text,
    primary key (subject, sequence)
);
create table if not exists {p}rejections (
    subject text primary key,
    entity_ref text,
    location text not null,
    origin text not null,
    document_index bigint,
    problems text not null,
    conflicts_with text,
    time text not null,
    sequence bigint not null
);
create index if not exists {p}rejections_entity on {p}rejections (entity_ref);
create index if not exists {p}rejections_location on {p}rejections (location);
create index if not exists {p}rejections_origin on {p}rejections (origin);
-- Value counts of the counted facet keys, over the whole catalog (`spec.type`) and within each
-- kind (`component|spec.type`), kept as entities change.
create table if not exists {p}facets (
    key text not null,
    value text not null,
    count bigint not null,
    primary key (key, value)
);
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
insert into {p}meta (key, value) values ('graph_epoch', (floor(random() * 9e15))::bigint) on conflict (key) do nothing;
-- @readers: indexes only readers need. A replay fills a new generation without them and builds
-- them (sorted, in bulk) just before readers switch to it: maintained row by row over a million
-- inserts, random B-tree and GIN inserts were most of a replay's database time.
create index if not exists {p}entities_keys on {p}entities using gin (search_keys);
create index if not exists {p}entities_text on {p}entities using gin (search_vector);
create index if not exists {p}entities_name on {p}entities (name, entity_ref);
create index if not exists {p}entities_updated on {p}entities (updated_at, entity_ref);
-- Kind, name and namespace filters read the row's columns (see `search::plan`); a page of one kind
-- in ref order walks this index.
create index if not exists {p}entities_kind on {p}entities (kind, entity_ref);
