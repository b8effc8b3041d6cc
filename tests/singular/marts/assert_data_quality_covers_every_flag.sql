-- Every data-quality flag of fct_bordereaux (dq_* columns; is_quantity_outlier is dq_quantity_outlier,
-- assert_data_quality_one_row_per_flag) is reported by mart_data_quality (macro
-- marts_defect_kinds): a flag added upstream cannot be silently left out.
with

flag_columns as (
    {{ fct_bordereaux_flag_columns() }}
),

reported as (
    select unnest(string_to_array('{{ marts_defect_kinds() | join(",") }}', ',')) as flag
)

select flag_columns.flag
from flag_columns
where not exists (
    select 1 from reported
    where reported.flag = flag_columns.flag
)
