{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        pre_hook="{{ delete_where(this, aggregated_arrivals_condition(var('recency_lookback_days'))) }}"
    )
}}

-- What each arrival day added to each user's days: one row per (user, event_date, arrival_date)
-- with the additive measures of the features and labels. Incremental by arrival date: a run
-- aggregates its own knowledge dates (and any arrival date in its read window whose silver
-- partition changed, macros/knowledge_dates.sql), so a new day reads one day of raw events,
-- however long the history. Late arrivals are rows of their own arrival date.
-- spend is an exact DECIMAL sum: the same in any order or thread count.

with events as (

    select * from {{ ref('stg_events') }}
    where {{ aggregated_arrivals_condition(var('recency_lookback_days')) }}

),

final as (

    select
        user_id,
        event_date,
        arrival_date,
        count(*) as events,
        count(*) filter (where event_type = 'view') as views,
        count(*) filter (where event_type = 'click') as clicks,
        count(*) filter (where event_type = 'add_to_cart') as add_to_carts,
        count(*) filter (where event_type = 'purchase') as purchases,
        coalesce(sum(quantity) filter (where event_type = 'purchase'), 0) as items_purchased,
        coalesce(sum(amount) filter (where event_type = 'purchase'), 0) as spend,
        count(device) as events_with_device,
        count(*) filter (where device in ('ios', 'android')) as mobile_events

    from events
    group by user_id, event_date, arrival_date

)

select * from final
