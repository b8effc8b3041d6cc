{{ config(materialized='view') }}
-- Every bordereau of every type on one grain (bsd_id), BEFORE the exclusion of drafts and
-- deleted rows (is_excluded says which), with `-suite` BSDD rows folded into their BSDD.
-- The SQL lives in macros/intermediate/bordereaux_prepared.sql, shared with
-- int_bordereaux__unioned, which materialises the counted rows incrementally. This view is
-- there to read and unit-test that SQL on every bordereau; nothing is built from it.

with

{{ bordereaux_prepared_ctes() }}

select * from prepared
