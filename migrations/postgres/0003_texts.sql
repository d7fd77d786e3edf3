-- The texts of a JSON array, as an array: entity rows keep their counted facet values as JSON text
-- (alike in both databases), and PostgreSQL derives a `text[]` from it once, when the row is
-- written, so that counting facets under a filter unnests arrays instead of parsing JSON per row.
create or replace function callboard_texts(json_array text) returns text[]
language sql immutable parallel safe
as $$ select coalesce(array_agg(item), '{}') from jsonb_array_elements_text(json_array::jsonb) as item $$;
