with source as (

    select * from {{ source('silver', 'products') }}

),

renamed as (

    select
        product_id,
        category,
        brand,
        cast(list_price as double) as list_price,
        active,
        cast(date as date) as snapshot_date

    from source

)

select * from renamed
