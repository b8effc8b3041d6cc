-- Inspection data is not public (ARCHITECTURE.md § Schemas): the public role has no privilege on
-- the ICPE conformity marts. Returns the offending grants.
select
    table_name,
    grantee,
    privilege_type
from information_schema.role_table_grants
where
    table_schema = '{{ ref("mart_icpe_conformity_alerts").schema }}'
    and table_name in ('mart_icpe_conformity_alerts', 'mart_icpe_daily_processing')
    and grantee in ('{{ var("tdw_role_prefix", "tdw") }}_public', 'PUBLIC')
{%- set _daily = ref('mart_icpe_daily_processing') %}
