-- amount is an exact DECIMAL: float sums depend on the order DuckDB's threads add them in (the last
-- digits of spend_30d changed between reruns); decimal sums do not. Marts cast to DOUBLE at the end.
-- arrival_date is taken from the folder name (equal to the file's column by contract) so that a
-- filter on it prunes whole partitions instead of opening every file of the lake.
with source as (

    select * from {{ source('silver', 'events') }}

),

renamed as (

    select
        event_id,
        user_id,
        event_type,
        event_time,
        cast(timezone('UTC', event_time) as date) as event_date,
        product_id,
        cast(amount as decimal(38, 6)) as amount,
        cast(quantity as integer) as quantity,
        device,
        session_id,
        cast(date as date) as arrival_date

    from source

)

select * from renamed
