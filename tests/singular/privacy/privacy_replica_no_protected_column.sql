{#-
    Privacy gate (b): no relation of the replica schema has a column classified PERSONAL,
    COMMERCIAL, SECRET or RESTRICTED, a dropped or unclassified column, or belongs to a table marked
    replicate: false. Reads the real columns from information_schema, so a hand-written model in
    the replica schema is checked too. Each replica model also runs the same check on itself as a
    post-hook, so the build fails at the model even before this test runs.
-#}
-- depends_on: {{ ref('replica__Form') }}
{%- if execute %}
    {{- privacy_raise('protected columns in the replica schema', privacy_replica_problems()) }}
{%- endif %}
select 'protected column in replica' as problem
where false
