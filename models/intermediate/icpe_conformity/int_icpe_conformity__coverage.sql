{#- Which of its ICPE rubriques cover each reception of waste at a site (METRICS.md § ICPE
    conformity). Grain: one row per movement received at a site x site rubrique (with alinéa)
    covering it; one row with a null rubrique when none of the site's rubriques covers it (or the
    site has no ICPE link).

    Coverage: the operation (performed, else planned) maps to the rubrique in
    stg_reference__icpe_rubrique_operations (many-to-many; a mapping without alinéa covers every
    alinéa of the rubrique, "2760-2" covers 2760-2, 2760-2-a, 2760-2-b), the site holds that
    rubrique × alinéa in int_icpe__authorisations (any version), and the hazardous-waste
    restriction holds: hazardous waste only counts under the hazardous-waste rubriques (2718,
    2760-1, 2770, 2790, 2792), except asbestos (BSDA) disposed of under D5, which 2760-2 also
    covers; non-hazardous waste only under the others. A movement gets one row per covering
    rubrique × alinéa, so its tonnes count once within a rubrique (no double counting) and once in
    each covering rubrique.

    Dates are local days in var('tdw_time_zone'); invalid dates (before tdw_min_valid_date or in
    the future) are null, never bucketed. counted_quantity_t is the accepted quantity (received −
    refused), 0 for outliers (METRICS.md: kept, flagged, excluded from tonnage sums).

    Incremental (macros/icpe_incremental.sql): a run re-reads only the movements int_movements
    wrote after this table's latest _tdw_built_at, those gone from it and those whose date became
    valid since; the pre-hook deletes their rows first (a movement can gain or lose rows). The
    table is rewritten whole when the content of its other inputs (authorisations, SIRET links,
    installations, rubrique ↔ operation mapping) changed: their md5 is kept in
    icpe_conformity__state. The pre-hook also logs the SIRETs the re-read movements leave and
    reach (icpe_conformity__site_changes), from which the ICPE marts recompute only those sites. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='append_new_columns',
        pre_hook=["{{ icpe_coverage_pre_hook(this) }}"],
        indexes=[
            {'columns': ['coverage_id'], 'unique': true},
            {'columns': ['movement_id']},
            {'columns': ['siret', 'rubrique_alinea', 'received_date']},
            {'columns': ['siret', 'rubrique_alinea', 'processed_date']},
            {'columns': ['_tdw_built_at']},
        ],
    )
}}

with

movements as (
    select
        movement_id,
        bsd_id,
        bsd_type,
        destination_siret as siret,
        destination_code_departement,
        waste_code,
        coalesce(is_hazardous, false) as is_hazardous,
        operation_code,
        planned_operation_code,
        coalesce(operation_code, planned_operation_code) as effective_operation_code,
        operation_class,
        coalesce(is_quantity_outlier, false) as is_quantity_outlier,
        quantity_accepted_t,
        case
            when coalesce(is_quantity_outlier, false) then 0
            else greatest(coalesce(quantity_accepted_t, 0), 0)
        end as counted_quantity_t,
        {{ local_date_if_valid('received_at') }} as received_date,
        case when operation_code is not null then {{ local_date_if_valid('processed_at') }} end as processed_date
    from {{ ref('int_movements') }}
    where
        destination_siret is not null
        and (received_at is not null or processed_at is not null)
        {{ icpe_coverage_in_scope('movement_id') }}
),

mapping as (
    select
        operation_code,
        rubrique as mapped_rubrique,
        rubrique_number,
        alinea as mapped_alinea,
        -- hazardous-waste rubriques of METRICS.md; a mapping to 2760 without alinéa stands for
        -- 2760-1 when the waste is hazardous
        rubrique_number in ('2718', '2770', '2790', '2792')
        or (rubrique_number = '2760' and alinea = '1') as is_hazardous_waste_rubrique
    from {{ ref('stg_reference__icpe_rubrique_operations') }}
),

-- the rubriques that could authorise an operation, per waste profile, after the restriction
profiles as (
    select * from (
        values (true, true), (true, false), (false, true), (false, false)
    ) as p (is_hazardous, is_bsda)
),

labelled as (
    select
        mapping.operation_code,
        profiles.is_hazardous,
        profiles.is_bsda,
        case
            when profiles.is_hazardous and mapping.is_hazardous_waste_rubrique then mapping.mapped_rubrique
            when
                profiles.is_hazardous and mapping.rubrique_number = '2760' and mapping.mapped_alinea is null
                then '2760-1'
            when
                profiles.is_hazardous and profiles.is_bsda and mapping.operation_code = 'D5'
                and mapping.mapped_rubrique = '2760-2'
                then '2760-2'
            when not profiles.is_hazardous and not mapping.is_hazardous_waste_rubrique then mapping.mapped_rubrique
        end as label
    from mapping
    cross join profiles
),

candidate_sets as (
    select
        operation_code,
        is_hazardous,
        is_bsda,
        string_agg(distinct label, ', ' order by label) as candidate_rubriques
    from labelled
    group by operation_code, is_hazardous, is_bsda
),

authorisations as (
    select *
    from {{ ref('int_icpe__authorisations') }}
    where siret is not null
),

-- a SIRET is an ICPE site when an installation is linked to it, even one without any rubrique
-- line (it then holds nothing: its operations are not authorised)
installation_links as (
    select
        links.siret,
        installations.s3ic_id,
        installations.departement_code
    from {{ ref('stg_icpe__siret_links') }} as links
    inner join {{ ref('stg_icpe__installations') }} as installations on links.s3ic_id = installations.s3ic_id
    where links.is_match and links.siret is not null
    union all
    select
        source_siret as siret,
        s3ic_id,
        departement_code
    from {{ ref('stg_icpe__installations') }}
    where source_siret is not null
    union all
    select
        siret,
        s3ic_id,
        departement_code
    from authorisations
),

sites as (
    select
        siret,
        min(s3ic_id) as site_s3ic_id,
        min(departement_code) as site_departement_code
    from installation_links
    group by siret
),

site_rubriques as (
    select
        siret,
        rubrique,
        alinea,
        alinea_main,
        rubrique_alinea,
        bool_or(is_hazardous_waste_rubrique) as is_hazardous_waste_rubrique,
        max(capacity_kind) as capacity_kind,
        min(s3ic_id) as s3ic_id,
        min(departement_code) as departement_code
    from authorisations
    group by siret, rubrique, alinea, alinea_main, rubrique_alinea
),

-- covering rubriques of the site, with whether a version is in force on the operation / reception
-- day; grouping by movement and rubrique counts a movement once within a rubrique
covering as (
    select
        movements.movement_id,
        site_rubriques.rubrique,
        site_rubriques.alinea,
        site_rubriques.rubrique_alinea,
        site_rubriques.capacity_kind,
        site_rubriques.is_hazardous_waste_rubrique,
        site_rubriques.s3ic_id,
        site_rubriques.departement_code,
        bool_or(
            authorisations.is_in_force
            and (authorisations.valid_from is null or movements.processed_date >= authorisations.valid_from)
            and (authorisations.valid_to is null or movements.processed_date < authorisations.valid_to)
        ) as is_in_force_on_processed_date,
        bool_or(
            authorisations.is_in_force
            and (authorisations.valid_from is null or movements.received_date >= authorisations.valid_from)
            and (authorisations.valid_to is null or movements.received_date < authorisations.valid_to)
        ) as is_in_force_on_received_date
    from movements
    inner join mapping on movements.effective_operation_code = mapping.operation_code
    inner join site_rubriques
        on
            movements.siret = site_rubriques.siret
            and mapping.rubrique_number = site_rubriques.rubrique
            and (
                mapping.mapped_alinea is null
                or mapping.mapped_alinea = site_rubriques.alinea_main
                or mapping.mapped_alinea = site_rubriques.alinea
                or site_rubriques.alinea like mapping.mapped_alinea || '-%'
            )
    inner join authorisations
        on
            site_rubriques.siret = authorisations.siret
            and site_rubriques.rubrique_alinea = authorisations.rubrique_alinea
    where
        case
            when movements.is_hazardous
                then
                    site_rubriques.is_hazardous_waste_rubrique
                    or (
                        movements.bsd_type = 'BSDA' and movements.effective_operation_code = 'D5'
                        and site_rubriques.rubrique = '2760' and site_rubriques.alinea_main = '2'
                    )
            else not site_rubriques.is_hazardous_waste_rubrique
        end
    group by
        movements.movement_id,
        site_rubriques.rubrique,
        site_rubriques.alinea,
        site_rubriques.rubrique_alinea,
        site_rubriques.capacity_kind,
        site_rubriques.is_hazardous_waste_rubrique,
        site_rubriques.s3ic_id,
        site_rubriques.departement_code
),

final as (
    select
        md5(movements.movement_id || '|' || coalesce(covering.rubrique_alinea, '')) as coverage_id,
        movements.movement_id,
        movements.bsd_id,
        movements.bsd_type,
        movements.siret,
        sites.siret is not null as site_has_icpe_link,
        coalesce(covering.s3ic_id, sites.site_s3ic_id) as s3ic_id,
        coalesce(covering.departement_code, sites.site_departement_code, movements.destination_code_departement)
            as departement_code,
        movements.waste_code,
        movements.is_hazardous,
        movements.operation_code,
        movements.planned_operation_code,
        movements.effective_operation_code,
        movements.operation_class,
        candidate_sets.operation_code is not null as is_operation_mapped,
        candidate_sets.candidate_rubriques,
        movements.received_date,
        movements.processed_date,
        movements.quantity_accepted_t,
        movements.counted_quantity_t,
        movements.is_quantity_outlier,
        covering.rubrique,
        covering.alinea,
        covering.rubrique_alinea,
        covering.capacity_kind,
        covering.is_hazardous_waste_rubrique,
        coalesce(covering.is_in_force_on_processed_date, false) as is_in_force_on_processed_date,
        coalesce(covering.is_in_force_on_received_date, false) as is_in_force_on_received_date,
        {{ built_at() }} as _tdw_built_at
    from movements
    left join covering on movements.movement_id = covering.movement_id
    left join sites on movements.siret = sites.siret
    left join candidate_sets
        on
            movements.effective_operation_code = candidate_sets.operation_code
            and movements.is_hazardous = candidate_sets.is_hazardous
            and (movements.bsd_type = 'BSDA') = candidate_sets.is_bsda
)

select * from final
