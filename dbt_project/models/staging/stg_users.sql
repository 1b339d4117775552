with source as (

    select * from {{ source('silver', 'users') }}

),

renamed as (

    select
        user_id,
        signup_date,
        country,
        cast(birth_year as integer) as birth_year,
        marketing_opt_in,
        plan,
        cast(date as date) as snapshot_date

    from source

)

select * from renamed
