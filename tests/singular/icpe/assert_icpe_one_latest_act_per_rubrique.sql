-- Every s3ic_id × rubrique × alinéa of the current extract has exactly one line in force
-- (is_latest_act): the snapshot's unique key depends on it.
select
    s3ic_id,
    rubrique,
    alinea,
    count(*) filter (where is_latest_act) as latest_lines
from {{ ref('stg_icpe__rubriques') }}
group by s3ic_id, rubrique, alinea
having count(*) filter (where is_latest_act) != 1
