-- Every code of METRICS.md § Operation codes is known, with the class METRICS.md gives it.
with expected (operation_code, operation_class) as (
    values
    ('R0', 'final_recovery'), ('R1', 'final_recovery'), ('R2', 'final_recovery'),
    ('R3', 'final_recovery'), ('R4', 'final_recovery'), ('R5', 'final_recovery'),
    ('R6', 'final_recovery'), ('R7', 'final_recovery'), ('R8', 'final_recovery'),
    ('R9', 'final_recovery'), ('R10', 'final_recovery'), ('R11', 'final_recovery'),
    ('R12', 'intermediate'), ('R13', 'intermediate'),
    ('D1', 'final_disposal'), ('D2', 'final_disposal'), ('D3', 'final_disposal'),
    ('D4', 'final_disposal'), ('D5', 'final_disposal'), ('D8', 'final_disposal'),
    ('D9', 'intermediate'), ('D9F', 'final_disposal'), ('D10', 'final_disposal'),
    ('D12', 'final_disposal'), ('D13', 'intermediate'), ('D14', 'intermediate'),
    ('D15', 'intermediate')
)

select
    expected.operation_code,
    expected.operation_class as expected_class,
    ops.operation_class as actual_class
from expected
left join {{ ref('stg_reference__processing_operations') }} as ops
    on expected.operation_code = ops.operation_code
where ops.operation_class is distinct from expected.operation_class
