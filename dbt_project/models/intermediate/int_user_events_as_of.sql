-- Every event as it was known on each as-of date D of the run: arrived on or before D, happened
-- on one of the feature_window_days days ending with D, categorised by the catalogue valid on D.
-- The arrival_date bounds are literals so DuckDB prunes the silver folders it never needs.
{%- set knowledge = knowledge_date_range() %}
{%- set window_days = var('feature_window_days') | int %}

with as_of_dates as (

    select * from {{ ref('int_feature_as_of_dates') }}

),

events_in_scan as (

    select
        user_id,
        event_type,
        event_date,
        product_id,
        amount,
        quantity,
        device,
        session_id,
        arrival_date

    from {{ ref('stg_events') }}
    where arrival_date between {{ date_literal(days_before(knowledge[0], window_days - 1)) }}
        and {{ date_literal(knowledge[1]) }}

),

events_known_as_of as (

    select
        as_of_dates.as_of_date,
        events_in_scan.*,
        as_of_dates.as_of_date - events_in_scan.event_date as days_ago

    from events_in_scan
    inner join as_of_dates
        on events_in_scan.arrival_date <= as_of_dates.as_of_date
        and events_in_scan.event_date <= as_of_dates.as_of_date
        and events_in_scan.event_date > as_of_dates.as_of_date - {{ window_days }}

),

product_versions as (

    select * from {{ ref('int_product_snapshots_scd2') }}

),

final as (

    select
        events_known_as_of.*,
        product_versions.category

    from events_known_as_of
    left join product_versions
        on events_known_as_of.product_id = product_versions.product_id
        and product_versions.valid_from <= events_known_as_of.as_of_date
        and (
            product_versions.valid_to is null
            or product_versions.valid_to > events_known_as_of.as_of_date
        )

)

select * from final
