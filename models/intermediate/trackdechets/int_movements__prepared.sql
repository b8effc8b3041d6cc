{{ config(materialized='view') }}
-- Every physical movement of a counted bordereau (int_bordereaux__unioned). The SQL lives in
-- macros/intermediate/movements_prepared.sql, shared with int_movements, which materialises it
-- incrementally. This view is there to read and unit-test that SQL; nothing is built from it.

with

{{ movements_prepared_ctes() }}

select * from movements
