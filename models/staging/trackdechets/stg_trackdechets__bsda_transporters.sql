-- One row per transport leg of a BSDA (layout shared by the newer BSDs: macros/staging_transporters.sql).
{{ staging_transporters('BsdaTransporter', 'bsdaId') }}
