-- One row per transport leg of a BSFF (layout shared by the newer BSDs: macros/staging_transporters.sql).
{{ staging_transporters('BsffTransporter', 'bsffId') }}
