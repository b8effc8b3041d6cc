{#-
    Personal values typed inside kept free text: masking.

    A column kept in the replica or the marts (a company name, an address, a waste description)
    is free text typed by a user, and a user sometimes types an e-mail address, a phone number or
    a licence plate in it ("Garage Martin - jean.martin@gmail.com"). The classification cannot
    catch that (it is per column), so every kept free-text value (mask_personal_is_free_text)
    goes through the same three detectors as the leak scan of the exports
    (scripts/tdw/privacy.py: EMAIL_RE, PHONE_RE, PLATE_RE; tests/python/test_replica.py checks
    that the two agree) and each match is replaced by the token '[masqué]'; the rest of the
    value is kept.

    mask_personal_text(expr, type[, suspect]) -> SQL expression of the same `type` (format_type
    spelling: 'text', 'character varying(30)', 'text[]', 'jsonb', ...). Other types are returned
    unchanged (enums, numbers, dates cannot hold typed text). Null stays null.

    Cost: the detectors' look-arounds make PostgreSQL's regular expressions slow (about 100 ns per
    character: 14 s for 3.5 M names and addresses), so a cheap pre-filter without look-around
    (about 10 ns per character) runs first, once per row over all its text columns joined
    (mask_personal_suspect), and only the rows it flags (0.1 % of the simulated ones: addresses
    such as « 25 AV DU 8 MAI 1945 ») go through the detectors. At 1 M bordereaux the pre-filter
    adds about 4.5 s of CPU to the whole replica.

    Source of the rule: trackdechets-source-schema.md § 1 (e-mails, phones and plates are
    PERSONAL), RGPD art. 4 (a nominative e-mail is personal data wherever it is typed).
-#}
{% macro mask_personal_token() -%}[masqué]{%- endmacro %}

{#- Python's \s in a str pattern, inside a PostgreSQL bracket expression: [[:space:]] alone is
    ASCII only and would let « 06 12 34 56 78 » typed with no-break spaces through. -#}
{% macro mask_personal_space() -%}
    {{- return("[:space:]\\u001c-\\u001f\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000") -}}
{%- endmacro %}

{#- The three detectors as one PostgreSQL (ARE) alternation; same patterns as privacy.py. -#}
{% macro mask_personal_pattern() -%}
    {%- set sp = mask_personal_space() -%}
    {%- set email = "[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\\.[A-Za-z0-9-]+)*\\.[A-Za-z]{2,}" -%}
    {%- set phone = "(?<![[:alnum:]_+])(?<![0-9][.,])(?:(?:\\+|00)33[" ~ sp ~ ".-]?[1-9]|0[1-9])(?:[" ~ sp
        ~ ".-]?[0-9]{2}){4}(?![[:alnum:]_])(?![.,][0-9])" -%}
    {%- set letters = "A-HJ-NP-TV-Z" -%}
    {%- set plate = "(?<![[:alnum:]_-])(?:[" ~ letters ~ "]{2}[- ][0-9]{3}[- ][" ~ letters ~ "]{2}"
        ~ "|[0-9]{1,4}[- ][A-Z]{1,3}[- ](?:0[1-9]|[1-8][0-9]|9[0-5]|2A|2B|97[1-6]))(?![[:alnum:]_-])" -%}
    {{- return(email ~ '|' ~ phone ~ '|' ~ plate) -}}
{%- endmacro %}

{#- A cheap pre-filter (no look-around: about ten times faster than the detectors), true for
    every text the detectors match: an '@', nine or more digits shaped like a phone number
    not inside a longer number, or plate-shaped letters and digits. -#}
{% macro mask_personal_prefilter() -%}
    {%- set sp = mask_personal_space() -%}
    {{- return("@|(^|[^0-9])(0|(\\+|00)33[" ~ sp ~ ".-]?)[1-9]([" ~ sp ~ ".-]?[0-9]{2}){4}([^0-9]|$)"
        ~ "|[0-9][- ][A-Z]{1,3}[- ][0-9]|[A-HJ-NP-TV-Z]{2}[- ][0-9]{3}[- ][A-HJ-NP-TV-Z]{2}") -}}
{%- endmacro %}

{% macro mask_personal_literal(pattern) -%}
    {{- return("'" ~ pattern | replace("'", "''") ~ "'") -}}
{%- endmacro %}

{#- True for a column whose values users type freely, from its classification: `free_text`
    when the column says (true for the PROCESS descriptions and reasons), else its class is
    PUBLIC_COMPANY (names, addresses), WASTE (descriptions, packagings, identification numbers)
    or GEO. IDENT values are generated ids and PROCESS ones statuses, codes and dates: probing
    them (StatusLog's millions of statuses) cost time for nothing. -#}
{% macro mask_personal_is_free_text(privacy, meta) -%}
    {%- if meta.get('free_text') is not none -%}
        {{- return(meta.get('free_text') in [true, 'true']) -}}
    {%- endif -%}
    {{- return(privacy in ['PUBLIC_COMPANY', 'WASTE', 'GEO']) -}}
{%- endmacro %}

{#- True for the types that can hold typed text: text, varchar, char, their arrays, json, jsonb. -#}
{% macro mask_personal_is_text_type(type) -%}
    {%- set t = type | lower -%}
    {%- set base = t[:-2] if t.endswith('[]') else t -%}
    {{- return(base in ['text', 'json', 'jsonb', 'character'] or base.startswith('character varying')
        or base.startswith('character(')) -}}
{%- endmacro %}

{#- JSON's escapes of the white space that Python's \s knows below U+0020 (\t, \n, \f, \r,
    \u000b, \u001c-\u001f): in a JSON text « 06\n12… » is a backslash and a letter, not a separator. -#}
{% macro mask_personal_json_space_escape() -%}
    {{- return("\\\\(?:[tnfr]|u00(?:0[bB]|1[c-fC-F]))") -}}
{%- endmacro %}

{#- The value as one text to probe: arrays joined by a space, json as its text with its white-space
    escapes turned into spaces (only when it holds a backslash: most do not), so that the
    pre-filter sees the separators the detectors see in the decoded strings.
    `json_text`: for json, an expression already holding `(expr)::text` (the replica computes it
    once per row: written twice here, the cast would run twice, 0.3 s for Form at 1 M). -#}
{% macro mask_personal_probe_text(expr, type, json_text=none) -%}
    {%- set t = type | lower -%}
    {%- if t.endswith('[]') -%}
        {{- return('array_to_string(' ~ expr ~ ", ' ')") -}}
    {%- elif t in ['json', 'jsonb'] -%}
        {%- set text = json_text if json_text else '(' ~ expr ~ ')::text' -%}
        {{- return('(case when strpos(' ~ text ~ ", '\\') > 0 then regexp_replace(" ~ text ~ ', '
            ~ mask_personal_literal(mask_personal_json_space_escape()) ~ ", ' ', 'g') else " ~ text ~ ' end)') -}}
    {%- endif -%}
    {{- return(expr) -}}
{%- endmacro %}

{#- SQL boolean: one of `probes` (text expressions) may hold a personal value. One regular
    expression over the values joined by \x01, so a row costs one call, not one per column. -#}
{% macro mask_personal_suspect(probes) -%}
    {{- return('(concat_ws(chr(1), ' ~ probes | join(', ') ~ ') ~ '
        ~ mask_personal_literal(mask_personal_prefilter()) ~ ')') -}}
{%- endmacro %}

{#- A JSON text cut into its strings (group 1, quotes and escapes included) and what lies between
    them (group 2). -#}
{% macro mask_personal_json_string() -%}
    {{- return('("(?:[^"\\\\]|\\\\.)*")|([^"]+)') -}}
{%- endmacro %}

{#- The masked value, rewritten unconditionally (null stays null). -#}
{% macro mask_personal_rewrite(expr, type) -%}
    {%- set t = type | lower -%}
    {%- set pattern = mask_personal_literal(mask_personal_pattern()) -%}
    {%- set token = mask_personal_literal(mask_personal_token()) -%}
    {%- if t.endswith('[]') -%}
        {{- return('(case when ' ~ expr ~ ' is not null then array(select regexp_replace(u.e, ' ~ pattern ~ ', '
            ~ token ~ ", 'g') from unnest(" ~ expr ~ ') with ordinality as u (e, i) order by u.i)::'
            ~ type ~ ' end)') -}}
    {%- elif t in ['json', 'jsonb'] -%}
        {#- each JSON string (values and keys) is decoded, masked and encoded again, the rest of the
            text kept: masking the JSON text itself read « \njean@… » as the e-mail « njean@… » and
            left « \[masqué] », an invalid escape that failed the build, and missed a phone number
            or plate after a \n (the letter n before it) -#}
        {{- return('(select string_agg(case when m.a[1] is null then m.a[2] else to_jsonb(regexp_replace(m.a[1]::'
            ~ t ~ " #>> '{}', " ~ pattern ~ ', ' ~ token ~ ", 'g'))::text end, '' order by m.n) from regexp_matches(("
            ~ expr ~ ")::text, " ~ mask_personal_literal(mask_personal_json_string()) ~ ", 'g') with ordinality as m (a, n))::"
            ~ type) -}}
    {%- endif -%}
    {{- return('regexp_replace(' ~ expr ~ ', ' ~ pattern ~ ', ' ~ token ~ ", 'g')::" ~ type) -}}
{%- endmacro %}

{#- mask_personal_text(expr, type, suspect=none): `expr` with personal values masked, same type.
    `suspect`: a SQL boolean already computed for the row (mask_personal_suspect over all the
    row's text columns, as the replica does); by default the value is probed alone. -#}
{% macro mask_personal_text(expr, type, suspect=none) -%}
    {%- if not mask_personal_is_text_type(type) -%}
        {{- return(expr) -}}
    {%- endif -%}
    {%- set when = suspect if suspect else mask_personal_suspect([mask_personal_probe_text(expr, type)]) -%}
    {{- return('(case when ' ~ when ~ ' then ' ~ mask_personal_rewrite(expr, type) ~ ' else ' ~ expr ~ ' end)') -}}
{%- endmacro %}
