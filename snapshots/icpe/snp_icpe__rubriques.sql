{#- SCD2 history of each installation's rubriques, keyed by s3ic_id × rubrique × alinéa: the
    act in force in the current extract (stg_icpe__rubriques.is_latest_act). A new version
    opens when the authorised quantity, unit, régime or state changes between extracts; a
    rubrique that disappears from its installation's newer extract is closed. -#}
{% snapshot snp_icpe__rubriques %}
{{
    config(
        target_schema='snapshots',
        unique_key='authorisation_key',
        strategy='check',
        check_cols=['authorised_quantity', 'unit_raw', 'regime_code', 'rubrique_state'],
        hard_deletes='invalidate',
    )
}}
    select
        s3ic_id || '|' || rubrique || '|' || coalesce(alinea, '') as authorisation_key,
        s3ic_id,
        rubrique,
        alinea,
        alinea_main,
        authorised_quantity,
        unit_raw,
        regime_code,
        rubrique_state,
        authorisation_date,
        extract_date,
        load_id
    from {{ ref('stg_icpe__rubriques') }}
    where is_latest_act and not is_rubrique_placeholder
{% endsnapshot %}
