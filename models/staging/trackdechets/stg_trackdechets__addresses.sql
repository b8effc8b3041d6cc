{#- One row per distinct one-line address written on a bordereau (emitter, recipient or
    destination "CompanyAddress" of Form, Bsda, Bsdasri, Bsff, Bsvhu, Bspaoh), with the postcode
    and commune read from it once (macros/geo.sql: postal_code_from_address, city_from_address).

    Why a table: reading an address takes several regular expressions, which cost more than
    everything else a staging view computes; addresses repeat (the same establishments write the
    same address on thousands of bordereaux), so the bordereau staging views join this table
    instead of parsing every row.

    Incremental: a run adds the addresses of the raw rows loaded after the table's latest
    address_loaded_at that it does not hold yet. An address always reads the same way, so rows are
    never updated; addresses no longer written anywhere stay (they cost nothing and are never
    published). The views join on address_md5, which has a unique index: an address of any length
    can be indexed that way (a btree entry is limited to about 2.7 kB), and a view read for other
    columns only (a scope, a list of ids) skips the join (PostgreSQL removes a left join to a
    unique key whose columns are not used). -#}
{{
    config(
        materialized='incremental',
        unique_key='address',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=[{'columns': ['address_md5'], 'unique': true}],
    )
}}

{%- set address_columns = [
    ('Form', 'emitterCompanyAddress'), ('Form', 'recipientCompanyAddress'),
    ('Bsda', 'emitterCompanyAddress'), ('Bsda', 'destinationCompanyAddress'),
    ('Bsdasri', 'emitterCompanyAddress'), ('Bsdasri', 'destinationCompanyAddress'),
    ('Bsff', 'emitterCompanyAddress'), ('Bsff', 'destinationCompanyAddress'),
    ('Bsvhu', 'emitterCompanyAddress'), ('Bsvhu', 'destinationCompanyAddress'),
    ('Bspaoh', 'emitterCompanyAddress'), ('Bspaoh', 'destinationCompanyAddress'),
] %}

with

{% if is_incremental() -%}
    since as (
        select {{ incremental_since(this, 'address_loaded_at') }} as loaded_at
    ),
{%- endif %}

written as (
    {%- for table, column in address_columns %}
        select
            "{{ column }}" as address,
            _tdw_loaded_at
        from {{ source('trackdechets', table) }}
        where
            "{{ column }}" is not null
            {%- if is_incremental() %}
                and _tdw_loaded_at > (select since.loaded_at from since)
            {%- endif %}
        {{ 'union all' if not loop.last }}
    {%- endfor %}
),

new_addresses as (
    select
        address,
        max(_tdw_loaded_at) as address_loaded_at
    from written
    {% if is_incremental() -%}
        where not exists (
            select 1 from {{ this }} as known
            where known.address = written.address
        )
    {%- endif %}
    group by address
)

select
    address,
    md5(address) as address_md5,
    {{ postal_code_from_address('address') }} as address_postal_code,
    {{ city_from_address('address') }} as address_city,
    address_loaded_at
from new_addresses
