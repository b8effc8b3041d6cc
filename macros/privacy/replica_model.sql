{#-
    replica_model(table_name): the whole body of one replica model.

    models/replica/replica__<Table>.sql is the one line `{{ replica_model('<Table>') }}`: the model is
    materialised as replica."<Table>" (production name, quoted), with the production column names,
    and each column is rendered from its classification in
    models/staging/trackdechets/_trackdechets__sources.yml (read through graph.sources):

      treatment    | replica column
      keep         | the raw value
      drop         | absent
      null         | present, always null (keeps the table's shape)
      generalise   | when `private_when` (SQL over the raw row) holds: null, 'Particulier' or the postal
                   | code + commune found at the end of the address (`generalise_to`); else the raw value
      pseudonymise | md5(TDW_PSEUDONYM_SALT || value); refuses to compile without the salt

    Every kept or generalised text value (text, varchar, text[], json) of a column users type
    freely (classes PUBLIC_COMPANY, WASTE, GEO, and the columns marked `free_text: true`; not the
    ids nor the PROCESS statuses and codes) then has the e-mails, phone numbers and licence plates
    typed inside it replaced by '[masqué]' (macros/privacy/mask_personal_text.sql: the leak
    scan's own detectors).

    Then any column with `nd_keys` is masked when one of those columns holds a SIRET / VAT number /
    orgId listed in AnonymousCompany (non-diffusible establishments): text[] columns lose those
    elements, names become 'non diffusible', other values null.

    Materialisation `replica_incremental` (macros/privacy/replica_incremental.sql): a daily run
    rewrites, on the raw table's primary key, only the rows loaded since the table's own mark, and
    the whole table when AnonymousCompany, the classification, this macro or the raw columns
    changed (or on --full-refresh, or for a table without a single-column primary key).

    Fail-closed: only raw columns that are classified are selected (a new, unclassified raw column
    never reaches the replica, and the privacy gate names it); a PERSONAL, COMMERCIAL, SECRET or
    RESTRICTED column whose treatment is not drop/null, a table with `replicate: false`, or an
    unknown treatment stop the compilation. A post-hook re-checks the built table's real columns.
    Rules: trackdechets-source-schema.md § 1 (classes), RGPD art. 4 and 89 (pseudonymisation is
    still personal data, hence no pseudonymised column by default), SIRENE "diffusion partielle".
-#}
{% macro replica_model(table_name) -%}
    {{ config(
        alias=table_name,
        materialized='replica_incremental',
        schema='replica',
        tags=['replica', 'privacy'],
        grants={'select': [privacy_public_role()]},
        post_hook=[
            "{{ privacy_assert_replica_relation('" ~ table_name ~ "') }}",
            "{{ replica_incremental_post_hook('" ~ table_name ~ "') }}",
        ]
    ) }}
    {%- set raw = source('trackdechets', table_name) -%}
    {%- set anonymous = source('trackdechets', 'AnonymousCompany') -%}
    {%- if execute -%}
        {%- set body = replica_select(table_name, raw, anonymous) -%}
        {%- set private_whens = [] -%}
        {%- for column in privacy_source_node(table_name).columns.values() -%}
            {%- set cond = privacy_column_meta(column).get('private_when') -%}
            {%- if cond -%}{%- do private_whens.append(cond) -%}{%- endif -%}
        {%- endfor -%}
        {%- set plan = replica_plan(table_name, raw, anonymous, body, privacy_relation_columns(raw.schema, raw.identifier), private_whens) -%}
        {{ replica_planned_sql(plan, body) }}
    {%- else -%}
        select 1 as parsing
    {%- endif -%}
{%- endmacro %}

{% macro privacy_public_role() -%}
    {{ return(env_var('TDW_ROLE_PREFIX', var('tdw_role_prefix', 'tdw')) ~ '_public') }}
{%- endmacro %}

{% macro replica_select(table_name, raw, anonymous) -%}
    {%- set node = privacy_source_node(table_name) -%}
    {%- set tmeta = (node.get('config') or {}).get('meta') or node.get('meta') or {} -%}
    {%- if not tmeta.get('replicate', true) -%}
        {{ exceptions.raise_compiler_error("table '" ~ table_name ~ "' is marked replicate: false in the sources ("
            ~ tmeta.get('reason', 'no reason given') ~ "); it must not have a replica model") }}
    {%- endif -%}
    {%- set raw_columns = privacy_relation_columns(raw.schema, raw.identifier) -%}
    {%- if raw_columns | length == 0 -%}
        {{ exceptions.raise_compiler_error("relation " ~ raw ~ " does not exist or has no column: run 'tdw extract' first") }}
    {%- endif -%}
    {%- set exprs = [] -%}
    {%- set probes = [] -%}
    {%- set nd_tests = [] -%}
    {%- set json_texts = [] -%}
    {%- for rc in raw_columns -%}
        {%- set column = node.columns.get(rc.name) -%}
        {%- if column is not none -%}
            {%- set e = replica_column_expression(table_name, rc, privacy_column_meta(column), raw_columns, probes, nd_tests, json_texts) -%}
            {%- if e -%}
                {%- do exprs.append(e ~ ' as ' ~ adapter.quote(rc.name)) -%}
            {%- endif -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if exprs | length == 0 -%}
        {{ exceptions.raise_compiler_error("table '" ~ table_name ~ "' has no column to replicate") }}
    {%- endif -%}
    {%- set flags = [] -%}
    {%- if probes | length > 0 -%}
        {%- do flags.append(mask_personal_suspect(probes) ~ ' as suspect') -%}
    {%- endif -%}
    {%- for test in nd_tests -%}
        {%- do flags.append(test ~ ' as nd_' ~ loop.index) -%}
    {%- endfor %}
with non_diffusible as (
    {{ non_diffusible_identifiers(anonymous) }}
)

select
    {{ exprs | join(',\n    ') }}
from {{ raw }} as src
{%- if flags | length > 0 %}
{# what each row's columns share, computed once per row: `suspect` (the row may hold a personal
   value typed in kept text) and nd_<n> (the row names a non-diffusible establishment in the
   nd_keys of several columns). The limit (of a one-row select: no row is lost) keeps the
   subquery as it is: pulled up, its expressions would be copied into every column and evaluated
   once per column instead of once per row. (The usual `offset 0` does the same, but sqlfluff
   cannot parse it here.) #}
cross join lateral (select {{ flags | join(', ') }}
    {%- if json_texts | length > 0 %}
    from (select {% for t in json_texts %}{{ t }} as t_{{ loop.index }}{{ ', ' if not loop.last }}{% endfor %} limit 1) as row_json
    {%- endif %} limit 1) as row_flags
{%- endif %}
{%- endmacro %}

{#- SQL expression of one replica column, or '' when the column is dropped. -#}
{#- `probes`: a list to which the column's text to probe for personal values is appended.
    `nd_tests`: a list of the row's non-diffusible tests (row_flags.nd_<position + 1>), to which
    the column's test is appended when new.
    `json_texts`: a list to which a probed json column's `(value)::text` is appended, computed
    once per row as row_json.t_<position + 1> (the probe reads it twice). -#}
{% macro replica_column_expression(table_name, rc, meta, raw_columns, probes, nd_tests, json_texts) -%}
    {%- set where = 'column "' ~ table_name ~ '"."' ~ rc.name ~ '"' -%}
    {%- set privacy = meta.get('privacy') -%}
    {%- set treatment = meta.get('treatment') -%}
    {%- if privacy is none or treatment is none -%}
        {{ return('') }}
    {%- endif -%}
    {%- if treatment not in privacy_treatments() -%}
        {{ exceptions.raise_compiler_error(where ~ ": unknown treatment '" ~ treatment ~ "' (expected one of "
            ~ privacy_treatments() | join(', ') ~ ")") }}
    {%- endif -%}
    {%- if privacy in privacy_protected_classes() and treatment not in ['drop', 'null'] -%}
        {{ exceptions.raise_compiler_error(where ~ " is classified " ~ privacy ~ " but its treatment is '"
            ~ treatment ~ "': such columns must be dropped (or nulled)") }}
    {%- endif -%}
    {%- set col = 'src.' ~ adapter.quote(rc.name) -%}
    {%- set typed_null = 'cast(null as ' ~ rc.type ~ ')' -%}
    {%- if treatment == 'drop' -%}
        {{ return('') }}
    {%- elif treatment == 'null' -%}
        {{ return(typed_null) }}
    {%- elif treatment == 'pseudonymise' -%}
        {%- set salt = env_var('TDW_PSEUDONYM_SALT', '') -%}
        {%- if salt | length < 16 -%}
            {{ exceptions.raise_compiler_error(where ~ " is to be pseudonymised but TDW_PSEUDONYM_SALT is unset or shorter than 16 characters") }}
        {%- endif -%}
        {%- set expr = "md5('" ~ salt | replace("'", "''") ~ "' || " ~ col ~ "::text)" -%}
    {%- elif treatment == 'generalise' -%}
        {%- set cond = meta.get('private_when') -%}
        {%- set to = meta.get('generalise_to') -%}
        {%- if not cond or to not in ['null', 'particulier', 'commune'] -%}
            {{ exceptions.raise_compiler_error(where ~ ": treatment generalise needs private_when and generalise_to (null, particulier or commune)") }}
        {%- endif -%}
        {%- if to == 'null' -%}
            {%- set general = typed_null -%}
        {%- elif to == 'particulier' -%}
            {%- set general = "'Particulier'" -%}
        {%- else -%}
            {#- '12 rue X 75001 Paris' -> '75001 Paris'; null when no postal code is found -#}
            {%- set general = "substring(" ~ col ~ " from '(\\d{5}[ ,]+[^0-9, ][^,]*?)\\s*$')" -%}
        {%- endif -%}
        {%- set expr = 'case when coalesce((' ~ cond ~ '), false) then ' ~ general ~ ' else ' ~ col ~ ' end' -%}
    {%- else -%}
        {%- set expr = col -%}
    {%- endif -%}
    {%- set unmasked = expr -%}
    {%- set probed = treatment in ['keep', 'generalise'] and mask_personal_is_free_text(privacy, meta)
            and mask_personal_is_text_type(rc.type) -%}
    {%- if probed -%}
        {#- an e-mail, phone number or plate typed inside kept text (mask_personal_text.sql); the
            row is probed once over all such columns (row_flags.suspect, replica_select) -#}
        {%- if rc.type | lower in ['json', 'jsonb'] -%}
            {%- do json_texts.append('(' ~ expr ~ ')::text') -%}
            {%- do probes.append(mask_personal_probe_text(expr, rc.type, json_text='row_json.t_' ~ json_texts | length)) -%}
        {%- else -%}
            {%- do probes.append(mask_personal_probe_text(expr, rc.type)) -%}
        {%- endif -%}
        {%- set expr = mask_personal_text(expr, rc.type, suspect='row_flags.suspect') -%}
    {%- endif -%}
    {%- set keys = meta.get('nd_keys') or [] -%}
    {%- if keys | length > 0 -%}
        {%- set types = {} -%}
        {%- for c in raw_columns -%}{%- do types.update({c.name: c.type}) -%}{%- endfor -%}
        {%- if rc.type.endswith('[]') and keys == [rc.name] -%}
            {#- a denormalised array of SIRETs: drop the non-diffusible elements, keep the order.
                `not in` (ids are never null) is a hashed subplan, built once; a correlated
                `not exists` would scan every identifier for every element of every row. -#}
            {%- set filtered = 'array(select u.e from unnest(' ~ expr ~ ') with ordinality as u (e, i)'
                ~ ' where u.e is null or ' ~ replica_nd_normal('u.e') ~ ' not in (select k from non_diffusible) order by u.i)' -%}
            {#- that subquery costs about a microsecond a row (1.1 s for Form's two arrays at 1 M
                bordereaux); an unflagged array of at most three elements none of which is
                non-diffusible (nearly every row) is the unmasked value as it is -#}
            {%- set clean = replica_nd_array_clean(unmasked) -%}
            {%- set expr = 'case when ' ~ ('not row_flags.suspect and ' if probed else '') ~ clean
                ~ ' then ' ~ unmasked ~ ' else ' ~ filtered ~ ' end' -%}
        {%- else -%}
            {%- set tests = [] -%}
            {%- for k in keys -%}
                {%- if k not in types -%}
                    {{ exceptions.raise_compiler_error(where ~ ": nd_keys names '" ~ k ~ "', which is not a column of the table") }}
                {%- endif -%}
                {%- if types[k].endswith('[]') -%}
                    {%- do tests.append('src.' ~ adapter.quote(k) ~ ' && array(select k from non_diffusible)') -%}
                {%- else -%}
                    {%- do tests.append('src.' ~ adapter.quote(k) ~ ' in (select k from non_diffusible)') -%}
                {%- endif -%}
            {%- endfor -%}
            {%- set is_name = rc.name.endswith('Name') or rc.name in ['name', 'givenName'] -%}
            {%- set masked = "'non diffusible'" if (is_name and rc.type == 'text') else typed_null -%}
            {%- set test = 'coalesce(' ~ tests | join(' or ') ~ ', false)' -%}
            {%- if test not in nd_tests -%}
                {%- do nd_tests.append(test) -%}
            {%- endif -%}
            {%- set expr = 'case when row_flags.nd_' ~ (nd_tests.index(test) + 1) ~ ' then ' ~ masked ~ ' else ' ~ expr ~ ' end' -%}
        {%- endif -%}
    {%- endif -%}
    {{ return(expr) }}
{%- endmacro %}

{#- SQL boolean, true only when the array `v` is the result of the non-diffusible filter of
    replica_column_expression as it is: empty, or one-dimensional from index 1 with at most three
    elements, none of them a non-diffusible identifier (null elements are kept by the filter).
    The filter compares each element normalised (replica_nd_normal); the elements are compared
    here as they are, so the array is declared clean only when no element holds white space or a
    lower-case letter (one test over the whole array: an element is then its own normal form).
    Null or unknown (a null array: the filter gives '{}') means: run the filter. Each `in` is a
    hashed subplan (built once); no subquery runs per row. -#}
{% macro replica_nd_array_clean(v) -%}
    {%- set tests = [] -%}
    {%- for i in range(1, 4) -%}
        {%- do tests.append('(cardinality(' ~ v ~ ') < ' ~ i ~ ' or ' ~ v ~ '[' ~ i ~ '] is null or '
            ~ v ~ '[' ~ i ~ '] not in (select k from non_diffusible))') -%}
    {%- endfor -%}
    {%- set joined = 'array_to_string(' ~ v ~ ", '')" -%}
    {%- set plain = '(not ' ~ joined ~ ' ~ ' ~ replica_nd_space_class() ~ ' and ' ~ joined ~ ' = upper(' ~ joined ~ '))' -%}
    {{- return('(cardinality(' ~ v ~ ') = 0 or (cardinality(' ~ v ~ ') <= 3 and array_ndims(' ~ v ~ ') = 1 and array_lower('
        ~ v ~ ', 1) = 1 and ' ~ plain ~ ' and ' ~ tests | join(' and ') ~ '))') -}}
{%- endmacro %}

{#- The white space of Python's \s (mask_personal_space) as one PostgreSQL bracket expression literal. -#}
{% macro replica_nd_space_class() -%}
    {{- return(mask_personal_literal('[' ~ mask_personal_space() ~ ']')) -}}
{%- endmacro %}

{#- An identifier (SIRET, VAT number, orgId) as the non-diffusible masking compares it: white
    space removed (« 300 557 784 87288 », a padded or no-break-spaced SIRET is the same SIRET),
    upper case (« fr12… » is the VAT number « FR12… »). Both sides are normalised: the identifiers of
    AnonymousCompany (non_diffusible_identifiers) and the values they are looked for in. -#}
{% macro replica_nd_normal(x) -%}
    {{- return('upper(regexp_replace(' ~ x ~ ', ' ~ replica_nd_space_class() ~ ", '', 'g'))") -}}
{%- endmacro %}

{#- Select of every identifier (column k) of a non-diffusible establishment listed in
    `anonymous` (AnonymousCompany): SIRET, orgId, VAT number, each as stored and normalised
    (replica_nd_normal): the arrays' elements are compared normalised, the scalar columns as they
    are (a lower-case VAT number stored so on both sides still matches); distinct, never null nor
    empty. -#}
{% macro non_diffusible_identifiers(anonymous) -%}
    select distinct k from (
        {%- for column in ['siret', 'orgId', 'vatNumber'] %}
        {{ 'union all ' if not loop.first }}select "{{ column }}" as k from {{ anonymous }}
        union all select {{ replica_nd_normal('"' ~ column ~ '"') }} from {{ anonymous }}
        {%- endfor %}
    ) as ids
    where k is not null and k <> ''
{%- endmacro %}
