-- One row per transport leg of a BSVHU (layout shared by the newer BSDs: macros/staging_transporters.sql).
{{ staging_transporters('BsvhuTransporter', 'bsvhuId') }}
