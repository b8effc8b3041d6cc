{#- Every physical movement origin site → destination site of the counted bordereaux
    (int_bordereaux__unioned), as CTEs ending with `movements`: what int_movements__prepared
    (a view) and int_movements (incremental) select from. BSDD: leg 1 producer → destination,
    or producer → temporary storer and, once the `-suite` exists, leg 2 storer → final
    destination; BSFF: one movement per packaging; other types: one (METRICS.md § Bordereaux and movements).

    scope: none (every bordereau), or the name of a CTE with a `bsd_id` column defined before
    these ones, holding the bordereaux to read and the ids of their `-suite` forms. -#}
{% macro movements_prepared_ctes(scope=none) -%}

-- the columns the legs read, not `select *`: both CTEs are read several times, so PostgreSQL
-- keeps their rows aside (on disk at national scale), and the address joins of the BSDD staging
-- view whose columns are not read are left out
bordereaux as (
    select
        bsd_id,
        bsd_type,
        emitter_siret,
        emitter_postal_code,
        emitter_city,
        emitter_address_is_work_site,
        destination_siret,
        destination_postal_code,
        destination_city,
        has_temp_storage,
        transporter_siret,
        transport_mode,
        taken_over_at,
        received_at,
        processed_at,
        quantity_declared_t,
        quantity_received_t,
        quantity_refused_t,
        planned_operation_code,
        operation_code,
        dq_invalid_date,
        waste_code,
        waste_chapter_code,
        is_hazardous,
        _tdw_last_loaded_at
    from {{ ref('int_bordereaux__unioned') }}
    {{ in_bsd_scope(scope) }}
),

bsdd as (
    select
        bsd_id,
        forwarded_in_id,
        is_deleted,
        emitter_siret,
        recipient_siret,
        recipient_postal_code,
        recipient_city,
        taken_over_at,
        received_at,
        processed_at,
        quantity_declared_t,
        quantity_received_t,
        quantity_refused_t,
        planned_operation_code,
        operation_code,
        dq_invalid_date
    from {{ ref('stg_trackdechets__bsdd') }}
    {{ in_bsd_scope(scope) }}
),

bsdd_first_transporters as (
    select distinct on (bsd_id)
        bsd_id,
        transporter_siret,
        transport_mode,
        taken_over_at
    from {{ ref('stg_trackdechets__bsdd_transporters') }}
    {{ in_bsd_scope(scope) }}
    order by bsd_id, transporter_number
),

bsff_packagings as (
    select * from {{ ref('stg_trackdechets__bsff_packagings') }}
    {{ in_bsd_scope(scope) }}
),

legs as (
    -- BSDD leg 1: to the destination, or to the temporary storer (the storer's own reception
    -- and operation, usually intermediate, are on the initial Form)
    select
        bordereaux.bsd_id,
        1 as leg_number,
        null::text as packaging_id,
        bordereaux.emitter_siret as origin_siret,
        'emitter' as origin_role,
        bordereaux.emitter_postal_code as origin_postal_code,
        bordereaux.emitter_city as origin_city,
        bordereaux.emitter_address_is_work_site as origin_address_is_work_site,
        initial.recipient_siret as destination_siret,
        case when bordereaux.has_temp_storage then 'temp_storer' else 'destination' end as destination_role,
        initial.recipient_postal_code as destination_postal_code,
        initial.recipient_city as destination_city,
        bordereaux.transporter_siret,
        bordereaux.transport_mode,
        bordereaux.taken_over_at,
        initial.received_at,
        initial.processed_at,
        initial.quantity_received_t,
        initial.quantity_refused_t,
        initial.quantity_declared_t,
        initial.planned_operation_code,
        initial.operation_code,
        initial.dq_invalid_date
    from bordereaux
    inner join bsdd as initial on bordereaux.bsd_id = initial.bsd_id
    where bordereaux.bsd_type = 'BSDD'

    union all

    -- BSDD leg 2: temporary storer → final destination (the `-suite` Form)
    select
        bordereaux.bsd_id,
        2 as leg_number,
        null::text as packaging_id,
        coalesce(suite.emitter_siret, initial.recipient_siret) as origin_siret,
        'temp_storer' as origin_role,
        initial.recipient_postal_code as origin_postal_code,
        initial.recipient_city as origin_city,
        false as origin_address_is_work_site,
        suite.recipient_siret as destination_siret,
        'destination' as destination_role,
        suite.recipient_postal_code as destination_postal_code,
        suite.recipient_city as destination_city,
        suite_leg.transporter_siret,
        suite_leg.transport_mode,
        coalesce(suite.taken_over_at, suite_leg.taken_over_at) as taken_over_at,
        suite.received_at,
        suite.processed_at,
        suite.quantity_received_t,
        suite.quantity_refused_t,
        suite.quantity_declared_t,
        suite.planned_operation_code,
        suite.operation_code,
        suite.dq_invalid_date
    from bordereaux
    inner join bsdd as initial on bordereaux.bsd_id = initial.bsd_id
    inner join bsdd as suite on initial.forwarded_in_id = suite.bsd_id and not suite.is_deleted
    left join bsdd_first_transporters as suite_leg on suite.bsd_id = suite_leg.bsd_id
    where bordereaux.bsd_type = 'BSDD'

    union all

    -- BSFF: one movement per packaging (acceptation and operation are per packaging)
    select
        bordereaux.bsd_id,
        1 as leg_number,
        packagings.packaging_id,
        bordereaux.emitter_siret as origin_siret,
        'emitter' as origin_role,
        bordereaux.emitter_postal_code as origin_postal_code,
        bordereaux.emitter_city as origin_city,
        bordereaux.emitter_address_is_work_site as origin_address_is_work_site,
        bordereaux.destination_siret,
        'destination' as destination_role,
        bordereaux.destination_postal_code,
        bordereaux.destination_city,
        bordereaux.transporter_siret,
        bordereaux.transport_mode,
        bordereaux.taken_over_at,
        coalesce(bordereaux.received_at, packagings.accepted_at) as received_at,
        packagings.processed_at,
        case
            when packagings.acceptation_status = 'REFUSED' then packagings.quantity_declared_t
            else packagings.quantity_accepted_weight_t
        end as quantity_received_t,
        case
            when packagings.acceptation_status = 'REFUSED' then packagings.quantity_declared_t
            when packagings.acceptation_status is not null then 0
        end as quantity_refused_t,
        packagings.quantity_declared_t,
        bordereaux.planned_operation_code,
        packagings.operation_code,
        bordereaux.dq_invalid_date or packagings.dq_invalid_date as dq_invalid_date
    from bordereaux
    inner join bsff_packagings as packagings
        on bordereaux.bsd_id = packagings.bsd_id
    where bordereaux.bsd_type = 'BSFF'

    union all

    -- BSDA, BSDASRI, BSVHU, BSPAOH: one movement emitter → destination
    select
        bsd_id,
        1 as leg_number,
        null::text as packaging_id,
        emitter_siret as origin_siret,
        'emitter' as origin_role,
        emitter_postal_code as origin_postal_code,
        emitter_city as origin_city,
        emitter_address_is_work_site as origin_address_is_work_site,
        destination_siret,
        'destination' as destination_role,
        destination_postal_code,
        destination_city,
        transporter_siret,
        transport_mode,
        taken_over_at,
        received_at,
        processed_at,
        quantity_received_t,
        quantity_refused_t,
        quantity_declared_t,
        planned_operation_code,
        operation_code,
        dq_invalid_date
    from bordereaux
    where bsd_type in ('BSDA', 'BSDASRI', 'BSVHU', 'BSPAOH')
),

-- the distinct addresses (postcode, city) written on the legs, located once each: locating
-- normalises the city name (regular expressions), which costs far more per movement than a join
address_pairs as (
    select distinct
        postal_code,
        city
    from (
        select
            origin_postal_code as postal_code,
            origin_city as city
        from legs
        union all
        select
            destination_postal_code as postal_code,
            destination_city as city
        from legs
    ) as written
),

address_locations as (
    select
        coalesce(address_pairs.postal_code, '') as written_postal_code,
        coalesce(address_pairs.city, '') as written_city,
        {{ address_location_columns('address', '') }}
    from address_pairs
    {{ address_location_joins('address', 'address_pairs.postal_code', 'address_pairs.city') }}
),

enriched as (
    select
        legs.*,
        bordereaux.bsd_type,
        bordereaux.waste_code,
        bordereaux.waste_chapter_code,
        bordereaux.is_hazardous,
        bordereaux._tdw_last_loaded_at,
        -- where each end is located from: the site (SIRET) or the address written on the BSD
        -- (a work / pickup site, or an actor without SIRET such as a private individual)
        case when legs.origin_address_is_work_site or legs.origin_siret is null then 'address' else 'site' end
            as origin_location_source,
        case when legs.destination_siret is null then 'address' else 'site' end as destination_location_source,
        {%- for end in ['origin', 'destination'] %}
            {%- for col in ['latitude', 'longitude', 'location_precision', 'code_commune', 'code_departement', 'code_region'] %}
                {{ end }}_address.{{ col }} as {{ end }}_address_{{ col }}{{ ',' if not (loop.last and end == 'destination') }}
            {%- endfor %}
        {%- endfor %}
    from legs
    inner join bordereaux on legs.bsd_id = bordereaux.bsd_id
    -- every pair of the legs is in address_locations (null-safe keys): the joins always match
    left join address_locations as origin_address
        on
            coalesce(legs.origin_postal_code, '') = origin_address.written_postal_code
            and coalesce(legs.origin_city, '') = origin_address.written_city
    left join address_locations as destination_address
        on
            coalesce(legs.destination_postal_code, '') = destination_address.written_postal_code
            and coalesce(legs.destination_city, '') = destination_address.written_city
),

movements as (
    select
        -- ids
        enriched.bsd_id || '-' || coalesce(enriched.packaging_id, enriched.leg_number::text) as movement_id,
        enriched.bsd_id,
        enriched.bsd_type,
        enriched.leg_number,
        enriched.packaging_id,

        -- sites
        enriched.origin_siret,
        enriched.origin_role,
        enriched.destination_siret,
        enriched.destination_role,
        enriched.transporter_siret,
        coalesce(enriched.transport_mode, 'ROAD') as transport_mode,

        -- dates
        enriched.taken_over_at,
        enriched.received_at,
        enriched.processed_at,

        -- waste
        enriched.waste_code,
        enriched.waste_chapter_code,
        enriched.is_hazardous,

        -- quantities (tonnes, at this movement's destination)
        enriched.quantity_declared_t,
        enriched.quantity_received_t,
        enriched.quantity_refused_t,
        enriched.quantity_received_t - coalesce(enriched.quantity_refused_t, 0) as quantity_accepted_t,

        -- operation at this movement's destination
        enriched.planned_operation_code,
        enriched.operation_code,
        {{ operation_class('enriched.operation_code') }} as operation_class,

        -- data quality
        {{ is_quantity_outlier_by_type(
            'enriched.quantity_received_t', 'enriched.quantity_refused_t', 'enriched.quantity_declared_t',
            'enriched.bsd_type', 'enriched.transport_mode'
        ) }} as is_quantity_outlier,
        enriched.dq_invalid_date,

        -- locations (METRICS.md § Distances): the company's coordinates first; else the commune of
        -- the address written on the BSD (work / pickup site when given); else what is known of the
        -- site (its commune or département)
        {% set location_columns = [
            'latitude', 'longitude', 'location_precision', 'code_commune', 'code_departement', 'code_region'
        ] %}
        {% for end in ['origin', 'destination'] %}
            {% set use_site -%}
                ({{ end }}_site.location_precision = 'exact'
                or (enriched.{{ end }}_location_source = 'site' and {{ end }}_site.siret is not null)
                or (enriched.{{ end }}_address_location_precision = 'unknown' and {{ end }}_site.siret is not null))
            {%- endset %}
            case when {{ use_site }} then 'site' else 'address' end as {{ end }}_location_source,
            {% for col in location_columns %}
                case
                    when {{ use_site }} then {{ end }}_site.{{ col }}
                    else enriched.{{ end }}_address_{{ col }}
                end as {{ end }}_{{ col }},
            {% endfor %}
        {% endfor %}

        -- load metadata
        enriched._tdw_last_loaded_at
    from enriched
    left join {{ ref('int_sites__located') }} as origin_site
        on enriched.origin_siret = origin_site.siret
    left join {{ ref('int_sites__located') }} as destination_site
        on enriched.destination_siret = destination_site.siret
)

{%- endmacro %}
