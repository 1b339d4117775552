{{ config(materialized='table') }}

-- Same rules as int_user_snapshots_scd2, for the catalogue: a product's category (and brand,
-- price, active flag) as of any date, so an event is categorised as the catalogue said on D.

with product_snapshots as (

    select * from {{ ref('stg_products') }}

),

snapshot_dates as (

    select
        snapshot_date,
        lag(snapshot_date) over (order by snapshot_date) as previous_snapshot_date,
        lead(snapshot_date) over (order by snapshot_date) as next_snapshot_date

    from (select distinct snapshot_date from product_snapshots) as distinct_dates

),

snapshots_with_previous as (

    select
        product_snapshots.*,
        snapshot_dates.previous_snapshot_date,
        lag(product_snapshots.snapshot_date) over by_product as previous_seen_date,
        lag(product_snapshots.category) over by_product as previous_category,
        lag(product_snapshots.brand) over by_product as previous_brand,
        lag(product_snapshots.list_price) over by_product as previous_list_price,
        lag(product_snapshots.active) over by_product as previous_active

    from product_snapshots
    inner join snapshot_dates using (snapshot_date)
    window by_product as (
        partition by product_snapshots.product_id order by product_snapshots.snapshot_date
    )

),

version_starts as (

    select
        *,
        (
            previous_seen_date is null
            or previous_seen_date is distinct from previous_snapshot_date
            or category is distinct from previous_category
            or brand is distinct from previous_brand
            or list_price is distinct from previous_list_price
            or active is distinct from previous_active
        ) as starts_version

    from snapshots_with_previous

),

numbered_versions as (

    select
        *,
        sum(cast(starts_version as integer)) over (
            partition by product_id order by snapshot_date rows unbounded preceding
        ) as version_number

    from version_starts

),

versions as (

    select
        product_id,
        version_number,
        min(snapshot_date) as valid_from,
        max(snapshot_date) as last_seen_date,
        arg_min(category, snapshot_date) as category,
        arg_min(brand, snapshot_date) as brand,
        arg_min(list_price, snapshot_date) as list_price,
        arg_min(active, snapshot_date) as active

    from numbered_versions
    group by product_id, version_number

),

final as (

    select
        versions.product_id,
        versions.valid_from,
        snapshot_dates.next_snapshot_date as valid_to,
        snapshot_dates.next_snapshot_date is null as is_current,
        versions.category,
        versions.brand,
        versions.list_price,
        versions.active

    from versions
    inner join snapshot_dates on versions.last_seen_date = snapshot_dates.snapshot_date

)

select * from final
