{#- Open data: establishments registered on Trackdéchets (METRICS.md § Secret statistique).
    Non-diffusible establishments (AnonymousCompany, dim_establishments.is_non_diffusible) are
    left out entirely: neither their SIRET, name nor address appears. Only public SIRENE-like
    attributes are kept (no coordinates, no contact). Grain: one row per registered SIRET. -#}
select
    siret::text as siret,
    siren::text as siren,
    establishment_name::text as establishment_name,
    code_naf::text as code_naf,
    libelle_naf::text as libelle_naf,
    code_commune::text as code_commune,
    nom_commune::text as nom_commune,
    code_departement::text as code_departement,
    code_region::text as code_region,
    array_to_string(company_types, '|')::text as company_types,
    is_treatment_facility::boolean as is_treatment_facility,
    registered_date::date as registered_date
from {{ ref('dim_establishments') }}
where is_registered and not is_non_diffusible
