-- One row per D/R operation code in the compact form, with its METRICS.md class.
select
    operation_code,
    operation_code_spaced,
    operation_description,
    operation_class,
    platform_operation_type,
    left(operation_code, 1) = 'R' as is_recovery_code,
    expected_operation_modes,
    is_selectable
from {{ ref('stg_reference__processing_operations') }}
