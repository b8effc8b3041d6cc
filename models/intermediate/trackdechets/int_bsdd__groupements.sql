{{
    config(
        materialized='incremental',
        unique_key='groupement_id',
        incremental_strategy='delete+insert',
        on_schema_change='sync_all_columns',
        pre_hook=["{{ bsdd_groupements_pre_hook(this) }}"],
        post_hook=["{{ record_incremental_mark(this, 'bsdd_groupements') }}"],
        indexes=[{'columns': ['groupement_id'], 'unique': true}],
    )
}}
-- One row per (initial BSDD, grouping BSDD) of an appendix-2 grouping (FormGroupement): the
-- tonnes of the initial BSDD put into the grouping BSDD, with both ends' sites and operations,
-- so that a final operation can be traced back to the producers without counting a tonne twice.
--
-- How tonnage is never counted twice: the initial BSDD's movement ends at the grouping site with
-- the site's intermediate operation (R12, R13, D13, D14, D15: operation_class 'intermediate',
-- excluded from recovery rates); the grouping BSDD (is_grouping) carries the grouped waste from
-- the grouping site to the final destination and holds the final operation. Tonnes produced are
-- summed over bordereaux that are not groupings (is_grouping = false); tonnes treated over final
-- operations only. This model splits a grouping's tonnes back onto its initial BSDDs.
--
-- Incremental (macros/intermediate/marked_incremental.sql): only the groupements in scope are
-- read and rewritten - loaded since the table's mark (meta.intermediate_marks), or with an end
-- that int_bordereaux__unioned wrote since or no longer counts; the pre-hook deletes them first,
-- so a groupement deleted upstream disappears.

with

groupements as (
    select * from {{ ref('stg_trackdechets__bsdd_groupements') }}
    where
        true
        {{ incremental_key_in_scope('bsdd_groupements', 'groupement_id') }}
),

{% if is_incremental() -%}
    -- the ends of the groupements in scope, looked up by bsd_id (all of them on a whole rewrite;
    -- the one-time filters skip the branch not taken)
    bordereaux as (
        select * from {{ ref('int_bordereaux__unioned') }}
        where (select state.is_full from pg_temp.bsdd_groupements_state as state)
        union all
        select * from {{ ref('int_bordereaux__unioned') }}
        where
            not (select state.is_full from pg_temp.bsdd_groupements_state as state)
            and bsd_id = any(array(
                select groupements.initial_bsd_id from groupements
                union
                select groupements.grouping_bsd_id from groupements
            ))
    )
{%- else -%}
    bordereaux as (
        select * from {{ ref('int_bordereaux__unioned') }}
    )
{%- endif %}

select
    -- ids
    groupements.groupement_id,
    groupements.initial_bsd_id,
    groupements.grouping_bsd_id,

    -- quantities (tonnes of the initial BSDD put into the grouping BSDD)
    groupements.quantity_t,

    -- initial BSDD
    initial.emitter_siret as initial_emitter_siret,
    initial.destination_siret as grouping_site_siret,
    initial.operation_code as initial_operation_code,
    initial.operation_class as initial_operation_class,
    initial.waste_code as initial_waste_code,

    -- grouping BSDD
    grouping_bsd.destination_siret as final_destination_siret,
    grouping_bsd.operation_code as final_operation_code,
    grouping_bsd.operation_class as final_operation_class,
    grouping_bsd.processed_at as final_processed_at,

    -- flags: an end missing from the counted bordereaux (draft, deleted or not yet loaded)
    initial.bsd_id is not null as is_initial_counted,
    grouping_bsd.bsd_id is not null as is_grouping_counted,

    -- load metadata
    {{ built_at() }} as _tdw_built_at
from groupements
left join bordereaux as initial on groupements.initial_bsd_id = initial.bsd_id
left join bordereaux as grouping_bsd on groupements.grouping_bsd_id = grouping_bsd.bsd_id
