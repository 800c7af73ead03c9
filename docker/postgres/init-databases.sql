-- Every Chomik database (chomik.migrating.DATABASES), created on the first start of
-- the compose PostgreSQL; `chomik db upgrade all` (the migrate service) fills them.
CREATE DATABASE chomik_gateway;
CREATE DATABASE chomik_storage;
CREATE DATABASE chomik_delivery;
CREATE DATABASE chomik_orders;
CREATE DATABASE chomik_payment;
CREATE DATABASE chomik_txcoord;
CREATE DATABASE chomik_carrier;
CREATE DATABASE chomik_bank;
