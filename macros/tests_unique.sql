{#-
    Uniqueness tests that PostgreSQL already guarantees are answered from the catalogue
    (issue 10: the daily run's data tests read every row of the big tables to check a key).

    A table carrying a unique index (or a primary key / unique constraint, which is one) on
    exactly the tested key cannot hold two rows with the same key: PostgreSQL refuses them. The
    tests below keep their SQL and add one condition, `not unique_key_is_indexed(...)`, which
    PostgreSQL evaluates once, before reading the table (an uncorrelated subquery: a one-time
    filter above the scan). When the index exists the scan is never executed (no rows, the test
    passes in milliseconds); when it does not, the test reads the table exactly as before.

    The index must be, on a plain table (relkind 'r': never a view, a materialised view or a
    partitioned table):
    - unique, valid, ready and live (a failed CREATE INDEX CONCURRENTLY leaves an invalid index
      that guarantees nothing) and immediate (a deferrable constraint allows duplicates until
      commit);
    - a btree index, not partial (no predicate) and without expressions;
    - keyed on exactly the tested columns (any order, each once; INCLUDE columns do not count);
    - with, for each column, the equality of the column's type: the index operator class's
      equality operator (btree strategy 3) is the one of the default btree operator class of its
      input type (true of the default classes and of text_pattern_ops, whose `=` is byte
      equality), and that input type is the column's type or one it is binary-coercible to
      (varchar to text);
    - comparing no more loosely than the test: the column's collation is deterministic (equality
      is byte equality, as GROUP BY sees it) or is the index's own collation;
    - for a combination of columns, nulls included: GROUP BY puts NULLs together while a unique
      index lets rows with a NULL in the key repeat, so each column must be NOT NULL or the index
      NULLS NOT DISTINCT. dbt's `unique` test ignores NULLs, as the index does.

    The key is compared by name with pg_attribute.attname: a quoted, upper-case or expression
    column_name never matches, and the test then scans (the safe side). A test with a `where`
    config receives a subquery instead of a relation and always scans.
-#}

{#- SQL boolean: `relation` is a table with a unique index guaranteeing that `columns` (names)
    never repeat, NULLs grouped together when `nulls_equal` (see above). -#}
{% macro unique_key_is_indexed(relation, columns, nulls_equal) -%}
    {%- set names = [] -%}
    {%- for column in columns -%}
        {%- do names.append("'" ~ (column | string | replace("'", "''")) ~ "'") -%}
    {%- endfor -%}
    {%- set table_name = '"' ~ (relation.schema | replace('"', '""')) ~ '"."'
        ~ (relation.identifier | replace('"', '""')) ~ '"' -%}
    {#- scalar subqueries rather than one join of the catalogues: a few ms to plan, not tens -#}
    exists (
        select
        from pg_catalog.pg_index as idx
        where
            idx.indrelid = to_regclass('{{ table_name | replace("'", "''") }}')
            and (select tbl.relkind from pg_catalog.pg_class as tbl where tbl.oid = idx.indrelid) = 'r'
            and (
                select idx_rel.relam from pg_catalog.pg_class as idx_rel
                where idx_rel.oid = idx.indexrelid
            ) = (select am.oid from pg_catalog.pg_am as am where am.amname = 'btree')
            and idx.indisunique
            and idx.indisvalid
            and idx.indisready
            and idx.indislive
            and idx.indimmediate
            and idx.indpred is null
            and idx.indexprs is null
            and idx.indnkeyatts = {{ names | length }}
            and (
                select count(distinct att.attname)
                from generate_series(0, idx.indnkeyatts - 1) as key_position (k)
                inner join pg_catalog.pg_attribute as att
                    on idx.indrelid = att.attrelid and idx.indkey[key_position.k] = att.attnum
                inner join pg_catalog.pg_opclass as opc on idx.indclass[key_position.k] = opc.oid
                where
                    att.attname in ({{ names | join(', ') }})
                    and not att.attisdropped
                    -- the operator class compares with its type's default equality
                    and (
                        select eq.amopopr from pg_catalog.pg_amop as eq
                        where
                            eq.amopfamily = opc.opcfamily
                            and eq.amopstrategy = 3
                            and eq.amoplefttype = opc.opcintype
                            and eq.amoprighttype = opc.opcintype
                    ) = (
                        select default_eq.amopopr
                        from pg_catalog.pg_opclass as default_opc
                        inner join pg_catalog.pg_amop as default_eq
                            on
                                default_opc.opcfamily = default_eq.amopfamily
                                and default_opc.opcintype = default_eq.amoplefttype
                                and default_opc.opcintype = default_eq.amoprighttype
                        where
                            default_opc.opcmethod = opc.opcmethod
                            and default_opc.opcintype = opc.opcintype
                            and default_opc.opcdefault
                            and default_eq.amopstrategy = 3
                    )
                    -- of the column's type, or of a type it is binary-coercible to (varchar: text)
                    and (
                        att.atttypid = opc.opcintype
                        or exists (
                            select from pg_catalog.pg_cast as cst
                            where
                                cst.castsource = att.atttypid
                                and cst.casttarget = opc.opcintype
                                and cst.castmethod = 'b'
                        )
                    )
                    -- not more loosely than GROUP BY on the column
                    and (
                        att.attcollation = 0
                        or att.attcollation = idx.indcollation[key_position.k]
                        or exists (
                            select from pg_catalog.pg_collation as col
                            where col.oid = att.attcollation and col.collisdeterministic
                        )
                    )
                    {%- if nulls_equal %}
                    and (att.attnotnull or idx.indnullsnotdistinct)
                    {%- endif %}
            ) = {{ names | length }}
    )
{%- endmacro %}

{#- dbt's `unique` test (dispatch name of dbt-postgres: the root project's macro wins), the
    same query as dbt's default__test_unique plus the catalogue condition when the test reads a
    relation (`model` is the subquery string of a `where` config otherwise). -#}
{% macro postgres__test_unique(model, column_name) %}
select
    {{ column_name }} as unique_field,
    count(*) as n_records
from {{ model }}
where
    {{ column_name }} is not null
    {%- if model.identifier is defined %}
    and not {{ unique_key_is_indexed(model, [column_name], false) }}
    {%- endif %}
group by {{ column_name }}
having count(*) > 1
{% endmacro %}
