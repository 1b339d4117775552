{#-
    A value of this run: min_date, max_date, arrival_signatures. The Dagster wiring passes them
    as JSON in the environment variable REFINERY_GOLD_RUN (refinery/assets/gold/plan.py), not as
    --vars: dbt re-parses the whole project whenever --vars change, and these change every run.
    dbt from a shell passes them as --vars, which is where they are read without it. Read at
    execution only, so the parsed project never depends on a run's values.
-#}
{% macro run_var(name) -%}
    {%- if execute -%}
        {%- set passed = fromjson(env_var('REFINERY_GOLD_RUN', '{}')) -%}
        {%- if name in passed -%}
            {{ return(passed[name]) }}
        {%- endif -%}
    {%- endif -%}
    {{ return(var(name, none)) }}
{%- endmacro %}


{#-
    The run's range of knowledge (arrival) dates, min_date / max_date (inclusive; run_var).
    Every as-of date a model writes is derived from these, so one run = one reproducible slice.
-#}

{% macro knowledge_date(name) -%}
    {%- if not execute -%}
        {{ return(modules.datetime.date(1970, 1, 1)) }}
    {%- endif -%}
    {%- set raw = run_var(name) -%}
    {%- if raw is none or raw == '' -%}
        {#- Unset: today (UTC), so `dbt compile`, `dbt docs generate` and a plain `dbt build`
            work; a run over other days passes --vars '{min_date: ..., max_date: ...}'. -#}
        {{ return(run_started_at.date()) }}
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


{#-
    on-run-start: the run's knowledge dates as a one-row table, `run_window` (min_date,
    max_date), which the data tests' `where` configs read. dbt renders those configs when it
    parses, not when it runs, so a date written into them would make the parse differ with every
    run; a query of this table is the same text in every run.
-#}
{% macro record_run_window() -%}
    {%- if execute -%}
        {%- set knowledge = knowledge_date_range() -%}
        create or replace table {{ target.schema }}.run_window as
        select {{ date_literal(knowledge[0]) }} as min_date, {{ date_literal(knowledge[1]) }} as max_date
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}


{#- The as-of dates whose labels become final in this run: knowledge date minus horizon+lateness. -#}
{% macro label_as_of_range() -%}
    {{ return(as_of_range(label_delay_days())) }}
{%- endmacro %}


{% macro date_literal(value) -%}
    date '{{ value.strftime("%Y-%m-%d") }}'
{%- endmacro %}


{% macro days_before(value, days) -%}
    {{ return(value - modules.datetime.timedelta(days=days | int)) }}
{%- endmacro %}


{#-
    The as-of dates a mart writes in this run: the run's knowledge dates (shifted back by
    `delay_days` for the labelled marts). Under --full-refresh, every as-of date from the first
    silver arrival up to that end: a full refresh rebuilds all of history, never only the run's
    dates.
-#}
{% macro as_of_range(delay_days=0) -%}
    {%- set knowledge = knowledge_date_range() -%}
    {%- set delay = modules.datetime.timedelta(days=delay_days | int) -%}
    {%- set last = knowledge[1] - delay -%}
    {%- if flags.FULL_REFRESH and execute -%}
        {%- set first = history_start() -%}
        {{ return([first if first is not none and first < last else last, last]) }}
    {%- endif -%}
    {{ return([knowledge[0] - delay, last]) }}
{%- endmacro %}


{% macro label_delay_days() -%}
    {{ return(var('label_horizon_days') | int + var('label_lateness_days') | int) }}
{%- endmacro %}


{#- The first arrival date silver holds (none when it holds nothing); execute-time only. -#}
{% macro history_start() -%}
    {%- set result = run_query(
        "select min(cast(date as date)) from " ~ source('silver', 'events')) -%}
    {%- set first = result.columns[0].values()[0] if result and result.rows | length else none -%}
    {{ return(first) }}
{%- endmacro %}


{#-
    The arrival dates whose per-(user, day) aggregates this run (re)computes, as a SQL condition
    on `arrival_date`. The aggregates are incremental: a run adds its own knowledge dates and
    recomputes any arrival date in the read window (the `lookback_days` before the run, up to its
    last date) whose silver partition changed since it was aggregated: the Dagster wiring passes
    each silver partition's signature in `arrival_signatures` (run_var), and int_arrival_ledger
    remembers the signatures last aggregated. Without that var (dbt from a shell) the whole read
    window is recomputed; on a first build or under --full-refresh, all of history.
-#}
{% macro aggregated_arrivals_condition(lookback_days) -%}
    {%- set knowledge = knowledge_date_range() -%}
    {%- if flags.FULL_REFRESH or not is_incremental() -%}
        {{ return("arrival_date <= " ~ date_literal(knowledge[1])) }}
    {%- endif -%}
    {%- set window_start = days_before(knowledge[0], lookback_days | int - 1) -%}
    {%- set signatures = run_var('arrival_signatures') -%}
    {%- if signatures is none or not execute -%}
        {{ return("arrival_date between " ~ date_literal(window_start) ~ " and "
            ~ date_literal(knowledge[1])) }}
    {%- endif -%}
    {%- set ledger = adapter.get_relation(
        database=this.database, schema=this.schema, identifier='int_arrival_ledger') -%}
    {%- set known = {} -%}
    {%- if ledger is not none -%}
        {%- set rows = run_query(
            "select cast(arrival_date as varchar), signature from " ~ ledger
            ~ " where arrival_date between " ~ date_literal(window_start)
            ~ " and " ~ date_literal(knowledge[1])).rows -%}
        {%- for row in rows -%}
            {%- do known.update({row[0]: row[1]}) -%}
        {%- endfor -%}
    {%- endif -%}
    {%- set stale = [] -%}
    {%- set day = namespace(value=window_start) -%}
    {%- for _ in range((knowledge[1] - window_start).days + 1) -%}
        {%- set key = day.value.strftime('%Y-%m-%d') -%}
        {%- if day.value >= knowledge[0] or signatures.get(key) != known.get(key) -%}
            {%- do stale.append(date_literal(day.value)) -%}
        {%- endif -%}
        {%- set day.value = day.value + modules.datetime.timedelta(days=1) -%}
    {%- endfor -%}
    {{ return("arrival_date in (" ~ stale | join(", ") ~ ")") }}
{%- endmacro %}


{#-
    Pre-hook of the incremental models: on an incremental run, drop the rows this run recomputes
    (`condition`, SQL on the model's columns), so a rerun replaces what it rebuilds, a key that
    disappeared is gone, and nothing else is touched. A first build or --full-refresh replaces
    the whole table, so there is nothing to delete.
-#}
{% macro delete_where(relation, condition) -%}
    {%- if is_incremental() -%}
        delete from {{ relation }} where {{ condition }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}


{% macro as_of_condition(as_of_range) -%}
    as_of_date between {{ date_literal(as_of_range[0]) }} and {{ date_literal(as_of_range[1]) }}
{%- endmacro %}


{#- The ledger rows a run replaces: its read window (all of it without signatures). -#}
{% macro ledger_window_condition() -%}
    {%- set knowledge = knowledge_date_range() -%}
    {%- set window_start = days_before(knowledge[0], var('recency_lookback_days') | int - 1) -%}
    {{ return("arrival_date between " ~ date_literal(window_start) ~ " and "
        ~ date_literal(knowledge[1])) }}
{%- endmacro %}
