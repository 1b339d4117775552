{#-
    The run's range of knowledge (arrival) dates, from --vars min_date / max_date (inclusive).
    Every as-of date a model writes is derived from these, so one run = one reproducible slice.
-#}

{% macro knowledge_date(name) -%}
    {%- set raw = var(name, none) -%}
    {%- if not execute -%}
        {{ return(modules.datetime.date(1970, 1, 1)) }}
    {%- endif -%}
    {%- if raw is none or raw == '' -%}
        {{ exceptions.raise_compiler_error(
            "dbt var '" ~ name ~ "' is not set. Pass the knowledge dates of the run, e.g. "
            ~ "--vars '{min_date: 2025-01-10, max_date: 2025-01-10}' (inclusive, YYYY-MM-DD)."
        ) }}
    {%- endif -%}
    {%- if raw is string and modules.re.fullmatch('[0-9]{4}-[0-9]{2}-[0-9]{2}', raw) -%}
        {{ return(modules.datetime.date.fromisoformat(raw)) }}
    {%- elif raw is not string and raw.year is defined and raw.month is defined -%}
        {#- YAML parses an unquoted 2025-01-10 as a date already. -#}
        {{ return(modules.datetime.date(raw.year, raw.month, raw.day)) }}
    {%- endif -%}
    {{ exceptions.raise_compiler_error(
        "dbt var '" ~ name ~ "' = '" ~ raw ~ "' is not a date; use YYYY-MM-DD."
    ) }}
{%- endmacro %}


{% macro knowledge_date_range() -%}
    {%- set min_date = knowledge_date('min_date') -%}
    {%- set max_date = knowledge_date('max_date') -%}
    {%- if execute and min_date > max_date -%}
        {{ exceptions.raise_compiler_error(
            "dbt vars min_date (" ~ min_date ~ ") is after max_date (" ~ max_date ~ "); "
            ~ "pass an inclusive range with min_date <= max_date."
        ) }}
    {%- endif -%}
    {{ return([min_date, max_date]) }}
{%- endmacro %}


{#- The as-of dates whose labels become final in this run: knowledge date minus horizon+lateness. -#}
{% macro label_as_of_range() -%}
    {%- set knowledge = knowledge_date_range() -%}
    {%- set delay = modules.datetime.timedelta(
        days=var('label_horizon_days') | int + var('label_lateness_days') | int) -%}
    {{ return([knowledge[0] - delay, knowledge[1] - delay]) }}
{%- endmacro %}


{% macro date_literal(value) -%}
    date '{{ value.strftime("%Y-%m-%d") }}'
{%- endmacro %}


{% macro days_before(value, days) -%}
    {{ return(value - modules.datetime.timedelta(days=days | int)) }}
{%- endmacro %}


{#-
    Pre-hook of the incremental marts: drop the rows of the as-of dates this run recomputes, so a
    rerun replaces a day (no duplicates) and other days are never touched.
-#}
{% macro delete_as_of_range(relation, as_of_range) -%}
    {%- set existing = adapter.get_relation(
        database=relation.database, schema=relation.schema, identifier=relation.identifier) -%}
    {%- if existing is not none and not flags.FULL_REFRESH -%}
        delete from {{ relation }}
        where as_of_date between {{ date_literal(as_of_range[0]) }}
            and {{ date_literal(as_of_range[1]) }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}
