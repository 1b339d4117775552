{{
    config(
        pre_hook="{{ delete_as_of_range(this, knowledge_date_range()) }}"
    )
}}

-- One row per user active (any event in the feature window) on as-of date D, using only what was
-- known at the end of D. Counts are 0 rather than null; ratios and recencies are null when
-- undefined (no denominator, no purchase); profile columns are null for users the CRM snapshot
-- valid on D does not carry. marketing_opt_in is 1/0 (numeric) so a generic consumer can use it.
{%- set knowledge = knowledge_date_range() %}
{%- set lookback_days = var('recency_lookback_days') | int %}

-- Materialized once: it feeds three aggregations below, and an inlined CTE would repeat the
-- events x as-of dates join (the largest intermediate of the whole graph) for each of them.
with user_events as materialized (

    select * from {{ ref('int_user_events_as_of') }}

),

as_of_dates as (

    select * from {{ ref('int_feature_as_of_dates') }}

),

event_aggregates as (

    select
        user_id,
        as_of_date,
        count(*) filter (where days_ago < 1) as events_1d,
        count(*) filter (where days_ago < 7) as events_7d,
        count(*) as events_30d,
        count(*) filter (where event_type = 'view' and days_ago < 1) as views_1d,
        count(*) filter (where event_type = 'view' and days_ago < 7) as views_7d,
        count(*) filter (where event_type = 'view') as views_30d,
        count(*) filter (where event_type = 'click' and days_ago < 1) as clicks_1d,
        count(*) filter (where event_type = 'click' and days_ago < 7) as clicks_7d,
        count(*) filter (where event_type = 'click') as clicks_30d,
        count(*) filter (where event_type = 'add_to_cart' and days_ago < 1) as add_to_carts_1d,
        count(*) filter (where event_type = 'add_to_cart' and days_ago < 7) as add_to_carts_7d,
        count(*) filter (where event_type = 'add_to_cart') as add_to_carts_30d,
        count(*) filter (where event_type = 'purchase' and days_ago < 1) as purchases_1d,
        count(*) filter (where event_type = 'purchase' and days_ago < 7) as purchases_7d,
        count(*) filter (where event_type = 'purchase') as purchases_30d,
        sum(quantity) filter (where event_type = 'purchase') as items_purchased_30d,
        -- amount is DECIMAL(38, 6) (stg_events): exact sums, the same in any order or thread count
        sum(amount) filter (where event_type = 'purchase' and days_ago < 1) as spend_1d,
        sum(amount) filter (where event_type = 'purchase' and days_ago < 7) as spend_7d,
        sum(amount) filter (where event_type = 'purchase') as spend_30d,
        count(distinct session_id) filter (where days_ago < 7) as sessions_7d,
        count(distinct session_id) as sessions_30d,
        count(distinct event_date) as active_days_30d,
        count(distinct product_id) as distinct_products_30d,
        count(distinct category) as distinct_categories_30d,
        min(days_ago) as days_since_last_event,
        count(device) as events_with_device_30d,
        count(*) filter (where device in ('ios', 'android')) as mobile_events_30d

    from user_events
    group by user_id, as_of_date

),

category_counts as (

    select
        user_id,
        as_of_date,
        category,
        row_number() over (
            partition by user_id, as_of_date order by count(*) desc, category asc
        ) as category_rank

    from user_events
    where category is not null
    group by user_id, as_of_date, category

),

device_counts as (

    select
        user_id,
        as_of_date,
        device,
        row_number() over (
            partition by user_id, as_of_date order by count(*) desc, device asc
        ) as device_rank

    from user_events
    where device is not null
    group by user_id, as_of_date, device

),

-- Recency of purchase looks further back than the feature window, still only at known events.
last_purchases as (

    select
        purchases.user_id,
        as_of_dates.as_of_date,
        max(purchases.event_date) as last_purchase_date

    from {{ ref('stg_events') }} as purchases
    inner join as_of_dates
        on purchases.arrival_date <= as_of_dates.as_of_date
        and purchases.event_date <= as_of_dates.as_of_date
        and purchases.event_date > as_of_dates.as_of_date - {{ lookback_days }}
    where purchases.event_type = 'purchase'
        and purchases.arrival_date
            between {{ date_literal(days_before(knowledge[0], lookback_days - 1)) }}
            and {{ date_literal(knowledge[1]) }}
    group by purchases.user_id, as_of_dates.as_of_date

),

user_versions as (

    select * from {{ ref('int_user_snapshots_scd2') }}

),

final as (

    select
        cast(event_aggregates.user_id as varchar) as user_id,
        cast(event_aggregates.as_of_date as date) as as_of_date,
        cast(events_1d as bigint) as events_1d,
        cast(events_7d as bigint) as events_7d,
        cast(events_30d as bigint) as events_30d,
        cast(views_1d as bigint) as views_1d,
        cast(views_7d as bigint) as views_7d,
        cast(views_30d as bigint) as views_30d,
        cast(clicks_1d as bigint) as clicks_1d,
        cast(clicks_7d as bigint) as clicks_7d,
        cast(clicks_30d as bigint) as clicks_30d,
        cast(add_to_carts_1d as bigint) as add_to_carts_1d,
        cast(add_to_carts_7d as bigint) as add_to_carts_7d,
        cast(add_to_carts_30d as bigint) as add_to_carts_30d,
        cast(purchases_1d as bigint) as purchases_1d,
        cast(purchases_7d as bigint) as purchases_7d,
        cast(purchases_30d as bigint) as purchases_30d,
        cast(coalesce(items_purchased_30d, 0) as bigint) as items_purchased_30d,
        cast(coalesce(spend_1d, 0) as double) as spend_1d,
        cast(coalesce(spend_7d, 0) as double) as spend_7d,
        cast(coalesce(spend_30d, 0) as double) as spend_30d,
        cast(spend_30d as double) / nullif(purchases_30d, 0) as avg_order_value_30d,
        cast(sessions_7d as bigint) as sessions_7d,
        cast(sessions_30d as bigint) as sessions_30d,
        cast(active_days_30d as bigint) as active_days_30d,
        cast(distinct_products_30d as bigint) as distinct_products_30d,
        cast(distinct_categories_30d as bigint) as distinct_categories_30d,
        cast(days_since_last_event as bigint) as days_since_last_event,
        cast(
            event_aggregates.as_of_date - last_purchases.last_purchase_date as bigint
        ) as days_since_last_purchase,
        cast(add_to_carts_30d / nullif(views_30d, 0) as double) as view_to_cart_rate_30d,
        cast(purchases_30d / nullif(add_to_carts_30d, 0) as double) as cart_to_purchase_rate_30d,
        cast(
            mobile_events_30d / nullif(events_with_device_30d, 0) as double
        ) as share_mobile_30d,
        cast(category_counts.category as varchar) as favourite_category_30d,
        cast(device_counts.device as varchar) as main_device_30d,
        cast(event_aggregates.as_of_date - user_versions.signup_date as bigint) as tenure_days,
        cast(year(event_aggregates.as_of_date) - user_versions.birth_year as bigint) as age,
        cast(user_versions.marketing_opt_in as bigint) as marketing_opt_in,
        cast(user_versions.plan as varchar) as plan,
        cast(user_versions.country as varchar) as country

    from event_aggregates
    left join category_counts
        on event_aggregates.user_id = category_counts.user_id
        and event_aggregates.as_of_date = category_counts.as_of_date
        and category_counts.category_rank = 1
    left join device_counts
        on event_aggregates.user_id = device_counts.user_id
        and event_aggregates.as_of_date = device_counts.as_of_date
        and device_counts.device_rank = 1
    left join last_purchases
        on event_aggregates.user_id = last_purchases.user_id
        and event_aggregates.as_of_date = last_purchases.as_of_date
    left join user_versions
        on event_aggregates.user_id = user_versions.user_id
        and user_versions.valid_from <= event_aggregates.as_of_date
        and (
            user_versions.valid_to is null
            or user_versions.valid_to > event_aggregates.as_of_date
        )

)

select * from final
