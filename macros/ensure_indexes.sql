{#- Post-hook: create the indexes of an incremental fact that it lacks.

    dbt's own `indexes` config creates indexes only when it creates the table (first build or
    --full-refresh), so a warehouse built before an index was added would never get it; this
    hook adds it on the next run, once, and is a catalogue lookup afterwards. An index is looked
    up by its definition on this very table (pg_indexes), not by name: during a --full-refresh
    the previous table, renamed to a backup, still holds its indexes' names until dbt drops it
    after the hooks. On a whole build the table is filled before the index is created, which is
    the cheap order.

    Args:
        relation: the model's relation (`this`).
        indexes: list of {'columns': [...], 'unique': bool}.

    Used by fct_movements and fct_bordereaux for their SIRET columns, which the inspection sheets
    and analysts in Metabase look up (their unique keys are primary keys of their contracts). -#}
{% macro ensure_indexes(relation, indexes) -%}
    {%- for index in indexes -%}
        {%- set columns = index['columns'] | join(', ') -%}
        {%- set create = 'create ' ~ ('unique ' if index.get('unique') else '') ~ 'index on ' ~ relation ~ ' (' ~ columns ~ ')' -%}
        do $ensure_index$ begin
            if not exists (
                select 1 from pg_indexes
                where
                    schemaname = '{{ relation.schema }}'
                    and tablename = '{{ relation.identifier }}'
                    and indexdef like '{{ "CREATE UNIQUE INDEX" if index.get("unique") else "CREATE INDEX" }} %USING btree ({{ columns }})'
            ) then
                execute '{{ create | replace("'", "''") }}';
            end if;
        end $ensure_index$;
    {% endfor -%}
{%- endmacro %}
