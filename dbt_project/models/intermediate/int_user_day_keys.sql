{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        pre_hook="{{ delete_where(this, aggregated_arrivals_condition(var('recency_lookback_days'))) }}"
    )
}}

-- The keys behind the distinct counts and the favourites, per (user, event_date, arrival_date):
-- which sessions, products and devices a user's events of that day carried, and how many events
-- each. Incremental by arrival date, like int_user_day_events.

with events as (

    select * from {{ ref('stg_events') }}
    where {{ aggregated_arrivals_condition(var('recency_lookback_days')) }}

),

-- One aggregate per kind of key, not one over the union of the three: DuckDB spills a grouping
-- that outgrows its memory_limit, but the three kinds' rows fed into one hash table did not
-- (a 112M-event day ran out of memory at 3 GB after 17 s; three groupings take 3.0 GB and finish).
{% set key_columns = {'session': 'session_id', 'product': 'product_id', 'device': 'device'} %}

final as (

    {% for kind, column in key_columns.items() %}
    select
        user_id,
        event_date,
        arrival_date,
        cast('{{ kind }}' as varchar) as kind,
        cast({{ column }} as varchar) as key,
        count(*) as events

    from events
    where {{ column }} is not null
    group by user_id, event_date, arrival_date, {{ column }}
    {% if not loop.last %}
    union all
    {% endif %}
    {% endfor %}

)

select * from final
