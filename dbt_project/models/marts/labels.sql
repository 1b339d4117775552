{{
    config(
        incremental_strategy='delete+insert',
        unique_key=['user_id', 'as_of_date'],
        pre_hook="{{ delete_where(this, as_of_condition(label_as_of_range())) }}"
    )
}}

-- label = 1 when the user purchased on one of days D+1..D+horizon. Late arrivals count up to the
-- allowed lateness: the label of D is written in the run of knowledge date D+horizon+lateness and
-- reads purchases that arrived by then, so rerunning or backfilling that day gives the same label.
-- The population is the users with a feature row on D: the people we would have scored.
-- Purchases come from the per-(user, day, arrival) aggregates, not the raw events.
{%- set label_range = label_as_of_range() %}
{%- set horizon = var('label_horizon_days') | int %}
{%- set lateness = var('label_lateness_days') | int %}

with population as (

    select user_id, as_of_date
    from {{ ref('user_daily_features') }}
    where {{ as_of_condition(label_range) }}

),

purchases_in_scan as (

    select user_id, event_date, arrival_date, purchases
    from {{ ref('int_user_day_events') }}
    where purchases > 0
        and arrival_date between {{ date_literal(days_before(label_range[0], -1)) }}
            and {{ date_literal(days_before(label_range[1], -(horizon + lateness))) }}

),

purchases_in_horizon as (

    select
        population.user_id,
        population.as_of_date,
        coalesce(sum(purchases_in_scan.purchases), 0) as purchases_in_horizon

    from population
    left join purchases_in_scan
        on population.user_id = purchases_in_scan.user_id
        and purchases_in_scan.event_date > population.as_of_date
        and purchases_in_scan.event_date <= population.as_of_date + {{ horizon }}
        and purchases_in_scan.arrival_date <= population.as_of_date + {{ horizon + lateness }}
    group by population.user_id, population.as_of_date

),

final as (

    select
        cast(user_id as varchar) as user_id,
        cast(as_of_date as date) as as_of_date,
        cast(purchases_in_horizon > 0 as integer) as label,
        cast(as_of_date + {{ horizon }} as date) as label_window_end,
        cast(as_of_date + {{ horizon + lateness }} as date) as labelled_on

    from purchases_in_horizon

)

select * from final
