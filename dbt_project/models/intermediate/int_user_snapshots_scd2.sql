{{ config(materialized='table') }}

-- A version starts when a user first appears, reappears after missing from a snapshot, or any
-- attribute changes; it ends (valid_to, exclusive) at the next snapshot that no longer carries it.
-- Only snapshot dates that exist count, so a day without a CRM file ends nobody.

with user_snapshots as (

    select * from {{ ref('stg_users') }}

),

snapshot_dates as (

    select
        snapshot_date,
        lag(snapshot_date) over (order by snapshot_date) as previous_snapshot_date,
        lead(snapshot_date) over (order by snapshot_date) as next_snapshot_date

    from (select distinct snapshot_date from user_snapshots) as distinct_dates

),

snapshots_with_previous as (

    select
        user_snapshots.*,
        snapshot_dates.previous_snapshot_date,
        lag(user_snapshots.snapshot_date) over by_user as previous_seen_date,
        lag(user_snapshots.signup_date) over by_user as previous_signup_date,
        lag(user_snapshots.country) over by_user as previous_country,
        lag(user_snapshots.birth_year) over by_user as previous_birth_year,
        lag(user_snapshots.marketing_opt_in) over by_user as previous_marketing_opt_in,
        lag(user_snapshots.plan) over by_user as previous_plan

    from user_snapshots
    inner join snapshot_dates using (snapshot_date)
    window by_user as (partition by user_snapshots.user_id order by user_snapshots.snapshot_date)

),

version_starts as (

    select
        *,
        (
            previous_seen_date is null
            or previous_seen_date is distinct from previous_snapshot_date
            or signup_date is distinct from previous_signup_date
            or country is distinct from previous_country
            or birth_year is distinct from previous_birth_year
            or marketing_opt_in is distinct from previous_marketing_opt_in
            or plan is distinct from previous_plan
        ) as starts_version

    from snapshots_with_previous

),

numbered_versions as (

    select
        *,
        sum(cast(starts_version as integer)) over (
            partition by user_id order by snapshot_date rows unbounded preceding
        ) as version_number

    from version_starts

),

versions as (

    select
        user_id,
        version_number,
        min(snapshot_date) as valid_from,
        max(snapshot_date) as last_seen_date,
        arg_min(signup_date, snapshot_date) as signup_date,
        arg_min(country, snapshot_date) as country,
        arg_min(birth_year, snapshot_date) as birth_year,
        arg_min(marketing_opt_in, snapshot_date) as marketing_opt_in,
        arg_min(plan, snapshot_date) as plan

    from numbered_versions
    group by user_id, version_number

),

final as (

    select
        versions.user_id,
        versions.valid_from,
        snapshot_dates.next_snapshot_date as valid_to,
        snapshot_dates.next_snapshot_date is null as is_current,
        versions.signup_date,
        versions.country,
        versions.birth_year,
        versions.marketing_opt_in,
        versions.plan

    from versions
    inner join snapshot_dates on versions.last_seen_date = snapshot_dates.snapshot_date

)

select * from final
