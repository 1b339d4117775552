{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        pre_hook="{{ delete_where(this, ledger_window_condition()) }}"
    )
}}

-- depends_on: {{ ref('int_user_day_events') }}
-- depends_on: {{ ref('int_user_day_keys') }}
-- Which silver partition each arrival date's aggregates were built from: the signature the
-- Dagster wiring passed (run_var arrival_signatures: file names, sizes, modification times and inodes of
-- the partition's parts). Written after both aggregate models succeeded, for every date of the
-- read window (null: no partition); a later run recomputes a date whose signature differs.
-- Without signatures (dbt from a shell) the window's entries are dropped, so the next Dagster
-- run recomputes that window once.
{%- set signatures = run_var('arrival_signatures') or {} %}

with signatures as (

    {%- if signatures %}
    select cast(arrival_date as date) as arrival_date, cast(signature as varchar) as signature
    from (values
        {%- for day, signature in signatures.items() | sort %}
        ('{{ day }}', '{{ signature }}'){{ "," if not loop.last }}
        {%- endfor %}
    ) as passed(arrival_date, signature)
    {%- else %}
    select cast(null as date) as arrival_date, cast(null as varchar) as signature
    where false
    {%- endif %}

)

select * from signatures
