-- The activity feed's generations (see migrations/templates/*-activity.sql).
insert into read_model (name, active, next) values ('activity', 1, 2) on conflict (name) do nothing;
