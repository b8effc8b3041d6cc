{{ config(severity='warn') }}
-- The real IDF extract links 158 installations holding waste rubriques (27xx) to a SIRET
-- (s3ic_sirene_matching.csv). When the IDF extract is loaded and fewer than 100 of them are
-- linked, the SIRET matching did not load or join. Warn only: the source is imperfect.
select count(distinct s3ic_id) as linked_waste_installations
from {{ ref('int_icpe__authorisations') }}
where
    has_siret_link
    and rubrique like '27%'
    and departement_code in ('75', '77', '78', '91', '92', '93', '94', '95')
having
    count(distinct s3ic_id) < 100
    and (
        select count(*) from {{ ref('stg_icpe__installations') }} as installations
        where installations.source_label = 's3ic_idf'
    ) > 0
