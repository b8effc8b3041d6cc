-- One row per transport leg of a BSPAOH (layout shared by the newer BSDs: macros/staging_transporters.sql).
{{ staging_transporters('BspaohTransporter', 'bspaohId', 'transporterTakenOverAt') }}
