{{ config(materialized='table') }}

-- The catalogue's view of each product as of any date (category, brand, price, active flag), so
-- an event is categorised as the catalogue said on D; the same rules as the users' history
-- (macros/scd2_from_snapshots.sql).

{{ scd2_from_snapshots(
    ref('stg_products'),
    key='product_id',
    attributes=['category', 'brand', 'list_price', 'active'],
) }}
