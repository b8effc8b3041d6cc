{#-
    Privacy gate (b): no relation of the replica schema has a column classified PERSONAL,
    COMMERCIAL, SECRET or RESTRICTED, a dropped or unclassified column, or belongs to a table marked
    replicate: false. Reads the real columns from information_schema, so a hand-written model in
    the replica schema is checked too. Each replica model also runs the same check on itself as a
    post-hook, so the build fails at the model even before this test runs.
-#}
{#- After every replica model: while one is being built its schema holds transient relations
    (__dbt_backup, __dbt_tmp) that the gate would rightly reject. A new replica model is added here. -#}
-- depends_on: {{ ref('replica__Bsda') }}
-- depends_on: {{ ref('replica__BsdaTransporter') }}
-- depends_on: {{ ref('replica__Bsdasri') }}
-- depends_on: {{ ref('replica__BsddFinalOperation') }}
-- depends_on: {{ ref('replica__BsddRevisionRequest') }}
-- depends_on: {{ ref('replica__BsddRevisionRequestApproval') }}
-- depends_on: {{ ref('replica__BsddTransporter') }}
-- depends_on: {{ ref('replica__Bsff') }}
-- depends_on: {{ ref('replica__BsffFicheIntervention') }}
-- depends_on: {{ ref('replica__BsffPackaging') }}
-- depends_on: {{ ref('replica__BsffTransporter') }}
-- depends_on: {{ ref('replica__Bspaoh') }}
-- depends_on: {{ ref('replica__BspaohTransporter') }}
-- depends_on: {{ ref('replica__Bsvhu') }}
-- depends_on: {{ ref('replica__BsvhuTransporter') }}
-- depends_on: {{ ref('replica__Company') }}
-- depends_on: {{ ref('replica__EcoOrganisme') }}
-- depends_on: {{ ref('replica__Form') }}
-- depends_on: {{ ref('replica__FormGroupement') }}
-- depends_on: {{ ref('replica__IntermediaryFormAssociation') }}
-- depends_on: {{ ref('replica__StatusLog') }}
-- depends_on: {{ ref('replica__TransporterReceipt') }}
-- depends_on: {{ ref('replica___BsffToBsffFicheIntervention') }}
{%- if execute %}
    {{- privacy_raise('protected columns in the replica schema', privacy_replica_problems()) }}
{%- endif %}
select 'protected column in replica' as problem
where false
