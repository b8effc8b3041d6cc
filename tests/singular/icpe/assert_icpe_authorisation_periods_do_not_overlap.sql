-- Validity periods of one s3ic_id × rubrique × alinéa follow each other without overlap:
-- each period ends where the next one starts, and never before it starts.
with

periods as (
    select
        s3ic_id,
        rubrique,
        alinea,
        valid_from,
        valid_to,
        lead(valid_from) over (
            partition by s3ic_id, rubrique, alinea order by valid_from nulls first
        ) as next_valid_from
    from {{ ref('int_icpe__authorisations') }}
)

select *
from periods
where
    valid_to < valid_from
    or (next_valid_from is not null and valid_to is distinct from next_valid_from)
