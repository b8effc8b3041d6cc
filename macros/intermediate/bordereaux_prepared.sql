{#- The bordereaux of every type on one grain (bsd_id), as CTEs ending with `prepared`: what
    int_bordereaux__prepared (a view, all rows) and int_bordereaux__unioned (incremental) select
    from. Drafts and deleted rows are INCLUDED (is_excluded says which); `-suite` BSDD rows are
    folded into their BSDD; quantities are tonnes (METRICS.md § Bordereaux and movements).

    scope: none (every bordereau), or the name of a CTE with a `bsd_id` column defined before
    these ones (see changed_bordereaux in macros/intermediate/incremental_scope.sql): only those
    bordereaux and the rows of their transporters, packagings, groupements and `-suite` forms
    are read. Links to other bordereaux (BSDA groupings and forwardings, BSFF next packagings)
    are always looked up over every bordereau, and flags over the whole table (unknown
    destination SIRET, received never processed) are recomputed by the incremental model's
    post-hook, so a scoped build gives the same rows as a full one.

    received_never_processed_as_of: the data's "today" for dq_received_never_processed, as a SQL
    expression; by default the latest valid update among the counted rows, which makes the
    whole `enriched` CTE be kept aside (costly at national scale). int_bordereaux__unioned gives
    null (flag false) and lets its post-hook set the flag over the whole table. -#}
{% macro bordereaux_prepared_ctes(scope=none, received_never_processed_as_of=none) -%}

-- ------------------------------------------------------------------ BSDD
bsdd as (
    select * from {{ ref('stg_trackdechets__bsdd') }}
    {{ in_bsd_scope(scope) }}
),

bsdd_transporters as (
    select * from {{ ref('stg_trackdechets__bsdd_transporters') }}
    {{ in_bsd_scope(scope) }}
),

bsdd_first_transporters as (
    select distinct on (bsd_id)
        bsd_id,
        transporter_siret,
        transport_mode,
        taken_over_at,
        dq_malformed_siret
    from bsdd_transporters
    order by bsd_id, transporter_number
),

bsdd_transporters_loaded as (
    select
        bsd_id,
        max(_tdw_loaded_at) as loaded_at,
        bool_or(dq_malformed_siret) as dq_malformed_siret
    from bsdd_transporters
    group by bsd_id
),

groupements as (
    select * from {{ ref('stg_trackdechets__bsdd_groupements') }}
    {{ in_bsd_scope(scope, ['initial_bsd_id', 'grouping_bsd_id']) }}
),

grouped_into as (
    select distinct on (initial_bsd_id)
        initial_bsd_id,
        grouping_bsd_id,
        count(*) over (partition by initial_bsd_id) as grouping_count
    from groupements
    order by initial_bsd_id asc, quantity_t desc nulls last, grouping_bsd_id asc
),

groupements_loaded as (
    select
        bsd_id,
        max(loaded_at) as loaded_at
    from (
        select
            initial_bsd_id as bsd_id,
            _tdw_loaded_at as loaded_at
        from groupements
        union all
        select
            grouping_bsd_id as bsd_id,
            _tdw_loaded_at as loaded_at
        from groupements
    ) as both_ends
    group by bsd_id
),

grouping_bsds as (
    select distinct grouping_bsd_id from groupements
),

bsdd_initial as (
    select
        bsdd.*,
        bsdd.recipient_is_temp_storage or bsdd.forwarded_in_id is not null as is_temp
    from bsdd
    where not bsdd.is_suite
),

bsdd_unified as (
    select
        initial.bsd_id,
        'BSDD' as bsd_type,
        initial.readable_id,
        initial.status,
        initial.emitter_type as bsd_subtype,

        initial.created_at,
        initial.updated_at,
        initial.emitted_at,
        coalesce(initial.taken_over_at, first_leg.taken_over_at) as taken_over_at,
        case when suite.bsd_id is not null then suite.received_at else initial.received_at end as received_at,
        case when suite.bsd_id is not null then suite.processed_at else initial.processed_at end as processed_at,

        initial.emitter_siret,
        initial.emitter_is_private_individual,
        coalesce(initial.work_site_postal_code, initial.emitter_postal_code) as emitter_postal_code,
        case
            when initial.work_site_postal_code is not null then initial.work_site_city
            else initial.emitter_city
        end as emitter_city,
        initial.work_site_postal_code is not null as emitter_address_is_work_site,
        case
            when suite.bsd_id is not null then suite.recipient_siret
            when not initial.is_temp then initial.recipient_siret
        end as destination_siret,
        case
            when suite.bsd_id is not null then suite.recipient_postal_code
            when not initial.is_temp then initial.recipient_postal_code
        end as destination_postal_code,
        case
            when suite.bsd_id is not null then suite.recipient_city
            when not initial.is_temp then initial.recipient_city
        end as destination_city,
        first_leg.transporter_siret,
        first_leg.transport_mode,
        initial.eco_organisme_siret,
        initial.is_temp as has_temp_storage,
        case when initial.is_temp then initial.recipient_siret end as temp_storer_siret,

        initial.waste_code,
        initial.is_dangerous as is_declared_dangerous,
        initial.is_pop,

        initial.quantity_declared_t,
        case
            when suite.bsd_id is not null then suite.quantity_received_t
            when not initial.is_temp then initial.quantity_received_t
        end as quantity_received_t,
        case
            when suite.bsd_id is not null then suite.quantity_refused_t
            when not initial.is_temp then initial.quantity_refused_t
        end as quantity_refused_t,

        case
            when suite.bsd_id is not null then suite.acceptation_status
            when not initial.is_temp then initial.acceptation_status
        end as acceptation_status,
        case
            when suite.bsd_id is not null then suite.planned_operation_code
            else initial.planned_operation_code
        end as planned_operation_code,
        case
            when suite.bsd_id is not null then suite.operation_code
            when not initial.is_temp then initial.operation_code
        end as operation_code,
        case
            when suite.bsd_id is not null then suite.operation_mode
            when not initial.is_temp then initial.operation_mode
        end as operation_mode,

        initial.emitter_type = 'APPENDIX2' or grouping_bsds.grouping_bsd_id is not null as is_grouping,
        grouped_into.grouping_bsd_id as grouped_into_bsd_id,

        initial.is_draft,
        initial.is_deleted,
        initial.dq_invalid_date or coalesce(suite.dq_invalid_date, false) as dq_invalid_date,
        initial.dq_malformed_siret or coalesce(suite.dq_malformed_siret, false)
        or coalesce(transporters_loaded.dq_malformed_siret, false) as dq_malformed_siret,
        initial.dq_noncanonical_operation_code or coalesce(suite.dq_noncanonical_operation_code, false)
            as dq_noncanonical_operation_code,
        initial.dq_dangerous_without_star_code,
        initial.dq_quantity_typed_in_kg_suspected or coalesce(suite.dq_quantity_typed_in_kg_suspected, false)
            as dq_quantity_typed_in_kg_suspected,

        -- a deleted `-suite` still counts: its deletion is a load that changes this bordereau
        -- (leg 2 disappears), so int_movements, scoped on this column, must re-read it
        greatest(
            initial._tdw_loaded_at, linked_suite._tdw_loaded_at, transporters_loaded.loaded_at,
            suite_transporters_loaded.loaded_at, groupements_loaded.loaded_at
        ) as _tdw_last_loaded_at
    from bsdd_initial as initial
    left join bsdd as suite
        on initial.forwarded_in_id = suite.bsd_id and not suite.is_deleted
    left join bsdd as linked_suite on initial.forwarded_in_id = linked_suite.bsd_id
    left join bsdd_first_transporters as first_leg on initial.bsd_id = first_leg.bsd_id
    left join bsdd_transporters_loaded as transporters_loaded on initial.bsd_id = transporters_loaded.bsd_id
    left join bsdd_transporters_loaded as suite_transporters_loaded
        on linked_suite.bsd_id = suite_transporters_loaded.bsd_id
    left join grouping_bsds on initial.bsd_id = grouping_bsds.grouping_bsd_id
    left join grouped_into on initial.bsd_id = grouped_into.initial_bsd_id
    left join groupements_loaded on initial.bsd_id = groupements_loaded.bsd_id
),

-- ------------------------------------------------------------------ types with a transporter table
{% for kind in ['bsda', 'bsff', 'bsvhu', 'bspaoh'] %}
    {{ kind }}_first_transporters as (
        select distinct on (bsd_id)
            bsd_id,
            transporter_siret,
            transport_mode,
            taken_over_at
        from {{ ref('stg_trackdechets__' ~ kind ~ '_transporters') }}
        {{ in_bsd_scope(scope) }}
        order by bsd_id, transporter_number
    ),

    {{ kind }}_transporters_loaded as (
        select
            bsd_id,
            max(_tdw_loaded_at) as loaded_at,
            bool_or(dq_malformed_siret) as dq_malformed_siret
        from {{ ref('stg_trackdechets__' ~ kind ~ '_transporters') }}
        {{ in_bsd_scope(scope) }}
        group by bsd_id
    ),
{% endfor %}

-- ------------------------------------------------------------------ BSDA
bsda as (
    select * from {{ ref('stg_trackdechets__bsda') }}
    {{ in_bsd_scope(scope) }}
),

-- links between BSDAs (groupings, forwardings), over every BSDA even when the build is scoped
bsda_links as (
    select
        bsd_id,
        grouped_in_bsd_id,
        forwarding_bsd_id
    from {{ ref('stg_trackdechets__bsda') }}
),

bsda_unified as (
    select
        bsda.bsd_id,
        'BSDA' as bsd_type,
        bsda.bsd_id as readable_id,
        bsda.status,
        bsda.bsda_type as bsd_subtype,

        bsda.created_at,
        bsda.updated_at,
        bsda.emitted_at,
        coalesce(first_leg.taken_over_at, bsda.transport_signed_at) as taken_over_at,
        bsda.received_at,
        bsda.processed_at,

        bsda.emitter_siret,
        bsda.emitter_is_private_individual,
        coalesce(bsda.pickup_site_postal_code, bsda.emitter_postal_code) as emitter_postal_code,
        case when bsda.pickup_site_postal_code is not null then bsda.pickup_site_city else bsda.emitter_city end
            as emitter_city,
        bsda.pickup_site_postal_code is not null as emitter_address_is_work_site,
        bsda.destination_siret,
        bsda.destination_postal_code,
        bsda.destination_city,
        first_leg.transporter_siret,
        first_leg.transport_mode,
        bsda.eco_organisme_siret,
        false as has_temp_storage,
        null::text as temp_storer_siret,

        bsda.waste_code,
        false as is_declared_dangerous,
        bsda.is_pop,

        bsda.quantity_declared_t,
        bsda.quantity_received_t,
        bsda.quantity_refused_t,

        bsda.acceptation_status,
        bsda.planned_operation_code,
        bsda.operation_code,
        bsda.operation_mode,

        bsda.bsda_type = 'GATHERING' or exists (
            select 1 from bsda_links as children
            where children.grouped_in_bsd_id = bsda.bsd_id
        ) as is_grouping,
        coalesce(bsda.grouped_in_bsd_id, forwarding.bsd_id) as grouped_into_bsd_id,

        bsda.is_draft,
        bsda.is_deleted,
        bsda.dq_invalid_date,
        bsda.dq_malformed_siret or coalesce(transporters_loaded.dq_malformed_siret, false) as dq_malformed_siret,
        bsda.dq_noncanonical_operation_code,
        bsda.dq_dangerous_without_star_code,
        false as dq_quantity_typed_in_kg_suspected,

        greatest(bsda._tdw_loaded_at, transporters_loaded.loaded_at) as _tdw_last_loaded_at
    from bsda
    left join bsda_first_transporters as first_leg on bsda.bsd_id = first_leg.bsd_id
    left join bsda_transporters_loaded as transporters_loaded on bsda.bsd_id = transporters_loaded.bsd_id
    left join bsda_links as forwarding on bsda.bsd_id = forwarding.forwarding_bsd_id
),

-- ------------------------------------------------------------------ BSFF (quantities: sums over packagings)
bsff as (
    select * from {{ ref('stg_trackdechets__bsff') }}
    {{ in_bsd_scope(scope) }}
),

bsff_packagings as (
    select * from {{ ref('stg_trackdechets__bsff_packagings') }}
    {{ in_bsd_scope(scope) }}
),

bsff_packaging_totals as (
    select
        bsd_id,
        sum(quantity_declared_t) as quantity_declared_t,
        sum(case
            when acceptation_status = 'REFUSED' then quantity_declared_t
            else quantity_accepted_weight_t
        end) as quantity_received_t,
        sum(case
            when acceptation_status = 'REFUSED' then quantity_declared_t
            when acceptation_status is not null then 0
        end) as quantity_refused_t,
        count(*) filter (where acceptation_status is not null) as accepted_or_refused_count,
        count(*) filter (where processed_at is not null) as processed_count,
        count(*) filter (where acceptation_status is distinct from 'REFUSED') as to_process_count,
        max(processed_at) as processed_at,
        mode() within group (order by operation_code) as operation_code,
        mode() within group (order by operation_mode) as operation_mode,
        bool_or(dq_invalid_date) as dq_invalid_date,
        bool_or(dq_noncanonical_operation_code) as dq_noncanonical_operation_code,
        max(_tdw_loaded_at) as loaded_at
    from bsff_packagings
    group by bsd_id
),

bsff_next_bsds as (
    select distinct on (initial.bsd_id)
        initial.bsd_id,
        next_packaging.bsd_id as next_bsd_id
    from bsff_packagings as initial
    inner join {{ ref('stg_trackdechets__bsff_packagings') }} as next_packaging
        on initial.next_packaging_id = next_packaging.packaging_id
    order by initial.bsd_id, next_packaging.bsd_id
),

bsff_unified as (
    select
        bsff.bsd_id,
        'BSFF' as bsd_type,
        bsff.bsd_id as readable_id,
        bsff.status,
        bsff.bsff_type as bsd_subtype,

        bsff.created_at,
        bsff.updated_at,
        bsff.emitted_at,
        coalesce(first_leg.taken_over_at, bsff.transport_signed_at) as taken_over_at,
        bsff.received_at,
        case
            when
                totals.processed_count >= totals.to_process_count and totals.processed_count > 0
                then totals.processed_at
        end
            as processed_at,

        bsff.emitter_siret,
        false as emitter_is_private_individual,
        bsff.emitter_postal_code,
        bsff.emitter_city,
        false as emitter_address_is_work_site,
        bsff.destination_siret,
        bsff.destination_postal_code,
        bsff.destination_city,
        first_leg.transporter_siret,
        first_leg.transport_mode,
        null::text as eco_organisme_siret,
        false as has_temp_storage,
        null::text as temp_storer_siret,

        bsff.waste_code,
        false as is_declared_dangerous,
        false as is_pop,

        coalesce(totals.quantity_declared_t, bsff.quantity_declared_t) as quantity_declared_t,
        case when totals.accepted_or_refused_count > 0 then totals.quantity_received_t end as quantity_received_t,
        case when totals.accepted_or_refused_count > 0 then totals.quantity_refused_t end as quantity_refused_t,

        case
            when totals.accepted_or_refused_count = 0 or totals.accepted_or_refused_count is null then null
            when totals.quantity_refused_t = 0 then 'ACCEPTED'
            when totals.quantity_refused_t >= totals.quantity_received_t then 'REFUSED'
            else 'PARTIALLY_REFUSED'
        end as acceptation_status,
        bsff.planned_operation_code,
        totals.operation_code,
        totals.operation_mode,

        bsff.bsff_type in ('GROUPEMENT', 'RECONDITIONNEMENT', 'REEXPEDITION') as is_grouping,
        next_bsds.next_bsd_id as grouped_into_bsd_id,

        bsff.is_draft,
        bsff.is_deleted,
        bsff.dq_invalid_date or coalesce(totals.dq_invalid_date, false) as dq_invalid_date,
        bsff.dq_malformed_siret or coalesce(transporters_loaded.dq_malformed_siret, false) as dq_malformed_siret,
        bsff.dq_noncanonical_operation_code or coalesce(totals.dq_noncanonical_operation_code, false)
            as dq_noncanonical_operation_code,
        false as dq_dangerous_without_star_code,
        false as dq_quantity_typed_in_kg_suspected,

        greatest(bsff._tdw_loaded_at, transporters_loaded.loaded_at, totals.loaded_at) as _tdw_last_loaded_at
    from bsff
    left join bsff_first_transporters as first_leg on bsff.bsd_id = first_leg.bsd_id
    left join bsff_transporters_loaded as transporters_loaded on bsff.bsd_id = transporters_loaded.bsd_id
    left join bsff_packaging_totals as totals on bsff.bsd_id = totals.bsd_id
    left join bsff_next_bsds as next_bsds on bsff.bsd_id = next_bsds.bsd_id
),

-- ------------------------------------------------------------------ BSDASRI (transporter inline)
bsdasri as (
    select * from {{ ref('stg_trackdechets__bsdasri') }}
    {{ in_bsd_scope(scope) }}
),

bsdasri_unified as (
    select
        bsd_id,
        'BSDASRI' as bsd_type,
        bsd_id as readable_id,
        status,
        bsdasri_type as bsd_subtype,

        created_at,
        updated_at,
        emitted_at,
        taken_over_at,
        received_at,
        processed_at,

        emitter_siret,
        false as emitter_is_private_individual,
        coalesce(pickup_site_postal_code, emitter_postal_code) as emitter_postal_code,
        case when pickup_site_postal_code is not null then pickup_site_city else emitter_city end as emitter_city,
        pickup_site_postal_code is not null as emitter_address_is_work_site,
        destination_siret,
        destination_postal_code,
        destination_city,
        transporter_siret,
        transport_mode,
        eco_organisme_siret,
        false as has_temp_storage,
        null::text as temp_storer_siret,

        waste_code,
        false as is_declared_dangerous,
        false as is_pop,

        quantity_declared_t,
        quantity_received_t,
        quantity_refused_t,

        acceptation_status,
        null::text as planned_operation_code,
        operation_code,
        operation_mode,

        bsdasri_type in ('GROUPING', 'SYNTHESIS') as is_grouping,
        coalesce(grouped_in_bsd_id, synthesized_in_bsd_id) as grouped_into_bsd_id,

        is_draft,
        is_deleted,
        dq_invalid_date,
        dq_malformed_siret,
        dq_noncanonical_operation_code,
        dq_dangerous_without_star_code,
        false as dq_quantity_typed_in_kg_suspected,

        _tdw_loaded_at as _tdw_last_loaded_at
    from bsdasri
),

-- ------------------------------------------------------------------ BSVHU
bsvhu as (
    select * from {{ ref('stg_trackdechets__bsvhu') }}
    {{ in_bsd_scope(scope) }}
),

bsvhu_unified as (
    select
        bsvhu.bsd_id,
        'BSVHU' as bsd_type,
        bsvhu.bsd_id as readable_id,
        bsvhu.status,
        null::text as bsd_subtype,

        bsvhu.created_at,
        bsvhu.updated_at,
        bsvhu.emitted_at,
        coalesce(first_leg.taken_over_at, bsvhu.transport_signed_at) as taken_over_at,
        bsvhu.received_at,
        bsvhu.processed_at,

        bsvhu.emitter_siret,
        bsvhu.emitter_is_private_individual,
        bsvhu.emitter_postal_code,
        bsvhu.emitter_city,
        false as emitter_address_is_work_site,
        bsvhu.destination_siret,
        bsvhu.destination_postal_code,
        bsvhu.destination_city,
        first_leg.transporter_siret,
        first_leg.transport_mode,
        bsvhu.eco_organisme_siret,
        false as has_temp_storage,
        null::text as temp_storer_siret,

        bsvhu.waste_code,
        false as is_declared_dangerous,
        false as is_pop,

        bsvhu.quantity_declared_t,
        bsvhu.quantity_received_t,
        -- Bsvhu has no refused weight: a refusal refuses the whole reception
        case
            when bsvhu.acceptation_status = 'REFUSED' then bsvhu.quantity_received_t
            when bsvhu.acceptation_status = 'ACCEPTED' then 0
        end as quantity_refused_t,

        bsvhu.acceptation_status,
        bsvhu.planned_operation_code,
        bsvhu.operation_code,
        bsvhu.operation_mode,

        false as is_grouping,
        null::text as grouped_into_bsd_id,

        bsvhu.is_draft,
        bsvhu.is_deleted,
        bsvhu.dq_invalid_date,
        bsvhu.dq_malformed_siret or coalesce(transporters_loaded.dq_malformed_siret, false) as dq_malformed_siret,
        bsvhu.dq_noncanonical_operation_code,
        bsvhu.dq_dangerous_without_star_code,
        false as dq_quantity_typed_in_kg_suspected,

        greatest(bsvhu._tdw_loaded_at, transporters_loaded.loaded_at) as _tdw_last_loaded_at
    from bsvhu
    left join bsvhu_first_transporters as first_leg on bsvhu.bsd_id = first_leg.bsd_id
    left join bsvhu_transporters_loaded as transporters_loaded on bsvhu.bsd_id = transporters_loaded.bsd_id
),

-- ------------------------------------------------------------------ BSPAOH
bspaoh as (
    select * from {{ ref('stg_trackdechets__bspaoh') }}
    {{ in_bsd_scope(scope) }}
),

bspaoh_unified as (
    select
        bspaoh.bsd_id,
        'BSPAOH' as bsd_type,
        bspaoh.bsd_id as readable_id,
        bspaoh.status,
        null::text as bsd_subtype,

        bspaoh.created_at,
        bspaoh.updated_at,
        bspaoh.emitted_at,
        coalesce(first_leg.taken_over_at, bspaoh.taken_over_at) as taken_over_at,
        bspaoh.received_at,
        bspaoh.processed_at,

        bspaoh.emitter_siret,
        false as emitter_is_private_individual,
        coalesce(bspaoh.pickup_site_postal_code, bspaoh.emitter_postal_code) as emitter_postal_code,
        case when bspaoh.pickup_site_postal_code is not null then bspaoh.pickup_site_city else bspaoh.emitter_city end
            as emitter_city,
        bspaoh.pickup_site_postal_code is not null as emitter_address_is_work_site,
        bspaoh.destination_siret,
        bspaoh.destination_postal_code,
        bspaoh.destination_city,
        first_leg.transporter_siret,
        first_leg.transport_mode,
        null::text as eco_organisme_siret,
        false as has_temp_storage,
        null::text as temp_storer_siret,

        bspaoh.waste_code,
        false as is_declared_dangerous,
        false as is_pop,

        bspaoh.quantity_declared_t,
        bspaoh.quantity_received_t,
        bspaoh.quantity_refused_t,

        bspaoh.acceptation_status,
        null::text as planned_operation_code,
        bspaoh.operation_code,
        null::text as operation_mode,

        false as is_grouping,
        null::text as grouped_into_bsd_id,

        bspaoh.is_draft,
        bspaoh.is_deleted,
        bspaoh.dq_invalid_date,
        bspaoh.dq_malformed_siret or coalesce(transporters_loaded.dq_malformed_siret, false) as dq_malformed_siret,
        bspaoh.dq_noncanonical_operation_code,
        bspaoh.dq_dangerous_without_star_code,
        false as dq_quantity_typed_in_kg_suspected,

        greatest(bspaoh._tdw_loaded_at, transporters_loaded.loaded_at) as _tdw_last_loaded_at
    from bspaoh
    left join bspaoh_first_transporters as first_leg on bspaoh.bsd_id = first_leg.bsd_id
    left join bspaoh_transporters_loaded as transporters_loaded on bspaoh.bsd_id = transporters_loaded.bsd_id
),

-- ------------------------------------------------------------------ all types
unioned as (
    select * from bsdd_unified
    union all
    select * from bsda_unified
    union all
    select * from bsff_unified
    union all
    select * from bsdasri_unified
    union all
    select * from bsvhu_unified
    union all
    select * from bspaoh_unified
),

waste_codes as (
    select * from {{ ref('stg_reference__waste_codes') }}
),

operations as (
    select * from {{ ref('stg_reference__processing_operations') }}
),

enriched as (
    select
        unioned.*,
        unioned.is_draft or unioned.is_deleted as is_excluded,
        waste_codes.chapter_code as waste_chapter_code,
        {{ is_hazardous_waste('unioned.waste_code', 'unioned.is_pop', 'unioned.is_declared_dangerous') }}
            as is_hazardous,
        unioned.quantity_received_t - coalesce(unioned.quantity_refused_t, 0) as quantity_accepted_t,
        {{ operation_class('unioned.operation_code') }} as operation_class,
        {{ is_quantity_outlier_by_type(
            'unioned.quantity_received_t', 'unioned.quantity_refused_t', 'unioned.quantity_declared_t',
            'unioned.bsd_type', 'unioned.transport_mode'
        ) }} as is_quantity_outlier,
        waste_codes.waste_code is null as dq_unknown_waste_code,
        unioned.operation_code is not null and operations.operation_code is null as dq_unknown_operation_code,
        {{ is_unregistered_siret('unioned.destination_siret') }} as dq_unknown_destination_siret
    from unioned
    left join waste_codes on unioned.waste_code = waste_codes.waste_code
    left join operations on unioned.operation_code = operations.operation_code
),

prepared as (
    select
        enriched.*,
        enriched.is_quantity_outlier as dq_quantity_outlier,
        {{ is_received_never_processed(
            'enriched.received_at', 'enriched.processed_at', 'enriched.acceptation_status',
            received_never_processed_as_of or '(select max(counted.updated_at) from enriched as counted where not counted.is_excluded and not ' ~ is_invalid_date('counted.updated_at') ~ ')'
        ) }} as dq_received_never_processed
    from enriched
)

{%- endmacro %}
