{#- Body of the staging model of a per-leg transporter table of the newer BSDs (BsdaTransporter,
    BsffTransporter, BsvhuTransporter, BspaohTransporter): they share one layout (source schema
    reference § 2.2), except the BSD foreign key and BSPAOH's pick-up date column name.

    Args:
        source_table: production table name, e.g. 'BsdaTransporter'.
        bsd_id_column: its foreign key to the BSD, e.g. 'bsdaId'.
        taken_over_column: pick-up date column ('transporterTransportTakenOverAt';
            'transporterTakenOverAt' on BSPAOH). -#}
{% macro staging_transporters(source_table, bsd_id_column, taken_over_column='transporterTransportTakenOverAt') -%}
with

source as (
    select * from {{ source('trackdechets', source_table) }}
),

renamed as (
    select
        -- ids
        id::text as transporter_id,
        "{{ bsd_id_column }}"::text as bsd_id,
        number as transporter_number,

        -- transporter
        {{ normalise_siret('"transporterCompanySiret"') }} as transporter_siret,
        nullif(trim("transporterCompanyVatNumber"), '') as transporter_vat_number,
        coalesce("transporterTransportMode"::text, 'ROAD') as transport_mode,

        -- dates
        "{{ taken_over_column }}"::timestamptz as taken_over_at,
        "transporterTransportSignatureDate"::timestamptz as transport_signed_at,
        "createdAt"::timestamptz as created_at,
        "updatedAt"::timestamptz as updated_at,

        -- flags
        {{ is_malformed_siret('"transporterCompanySiret"') }} as dq_malformed_siret,
        {{ is_invalid_date('"' ~ taken_over_column ~ '"') }} as dq_invalid_date,

        -- load metadata
        _tdw_loaded_at
    from source
)

select * from renamed
{%- endmacro %}
