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

keyed as (

    select user_id, event_date, arrival_date, 'session' as kind, session_id as key
    from events where session_id is not null
    union all
    select user_id, event_date, arrival_date, 'product' as kind, product_id as key
    from events where product_id is not null
    union all
    select user_id, event_date, arrival_date, 'device' as kind, device as key
    from events where device is not null

),

final as (

    select
        user_id,
        event_date,
        arrival_date,
        cast(kind as varchar) as kind,
        cast(key as varchar) as key,
        count(*) as events

    from keyed
    group by user_id, event_date, arrival_date, kind, key

)

select * from final
