{#- Bucketing of timestamps for the marts (METRICS.md § Units and dates). -#}

{#- Local calendar day of a timestamptz in var('tdw_time_zone') (Europe/Paris), or null when the
    timestamp is null or invalid: before var('tdw_min_valid_date') (local day) or in the future
    (after the build's transaction time). Invalid dates are flagged upstream (dq_invalid_date) and
    never bucketed. -#}
{% macro local_date_if_valid(ts) -%}
    case
        when ({{ ts }} at time zone '{{ var("tdw_time_zone") }}')::date >= date '{{ var("tdw_min_valid_date") }}'
            and {{ ts }} <= current_timestamp
            then ({{ ts }} at time zone '{{ var("tdw_time_zone") }}')::date
    end
{%- endmacro %}

{#- True when one of the timestamps `columns` lay in the future at a build that started at or
    after `since` and has passed now: local_date_if_valid gave it null then and gives its day
    now. An incremental model bucketing with local_date_if_valid re-reads such rows, as a full
    refresh would bucket them (nothing upstream rewrote them: only the clock moved). -#}
{% macro became_valid_since(columns, since) -%}
    (
        {%- for column in columns %}
        ({{ column }} > {{ since }} and {{ column }} <= current_timestamp){{ ' or' if not loop.last }}
        {%- endfor %}
    )
{%- endmacro %}

{#- Today in var('tdw_time_zone'). -#}
{% macro local_today() -%}
    (current_timestamp at time zone '{{ var("tdw_time_zone") }}')::date
{%- endmacro %}

{#- The data-quality flags of fct_bordereaux reported by mart_data_quality, in report order:
    every dq_* flag of the int_bordereaux__unioned contract, each once. is_quantity_outlier is not
    listed: it is the same flag as dq_quantity_outlier (the column under its METRICS.md name), which
    reports it. The singular test assert_data_quality_covers_every_flag fails when fct_bordereaux
    gains a dq_* column that is not listed here, assert_data_quality_one_row_per_flag when a kind is
    not a dq_* column. -#}
{% macro marts_defect_kinds() -%}
    {{ return([
        'dq_quantity_outlier',
        'dq_invalid_date',
        'dq_unknown_waste_code',
        'dq_unknown_operation_code',
        'dq_noncanonical_operation_code',
        'dq_malformed_siret',
        'dq_unknown_destination_siret',
        'dq_received_never_processed',
        'dq_dangerous_without_star_code',
        'dq_quantity_typed_in_kg_suspected',
    ]) }}
{%- endmacro %}

{#- Select of the data-quality flag columns of fct_bordereaux (the dq_* columns, as column `flag`),
    read from the catalogue: what the two data-quality tests compare mart_data_quality's defect
    kinds with (assert_data_quality_covers_every_flag, assert_data_quality_one_row_per_flag). -#}
{% macro fct_bordereaux_flag_columns() -%}
    select column_name::text as flag
    from information_schema.columns
    where
        table_schema = '{{ ref("fct_bordereaux").schema }}'
        and table_name = '{{ ref("fct_bordereaux").identifier }}'
        and column_name like 'dq\_%'
{%- endmacro %}
