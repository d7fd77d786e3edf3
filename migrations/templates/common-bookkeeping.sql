-- What every projection's generation has, whatever its own tables (template, for both databases:
-- {p} is the generation's prefix; {without rowid} is SQLite's clustering on the primary key): the
-- log positions its rows reflect, written in the same transaction as the rows, and a few numbers
-- (the layout the tables were built with, the catalog's graph version).
create table if not exists {p}positions (
    grp text not null,
    topic text not null,
    partition integer not null,
    "offset" bigint not null,
    event_time text not null,
    primary key (grp, topic, partition)
) {without rowid};
create table if not exists {p}meta (key text primary key, value bigint not null);
