-- The registry of read-model generations. A replay builds generation N+1 beside the active one
-- and switches `active` in one statement; see crates/callboard-readmodel-postgres.
create table if not exists read_model (
    name text primary key,
    active bigint not null,
    next bigint not null
);
insert into read_model (name, active, next) values ('catalog', 1, 2) on conflict (name) do nothing;
