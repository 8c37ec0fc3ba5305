-- Lesson 11 (scaling): the sharded orders of the postgres_fdw demo, distributed by Citus instead.
-- Run once by the citus service of docker-compose.yml (profile "citus") when its data volume is created:
--   docker compose --profile citus up -d citus
--   docker compose exec citus psql -U postgres -d workbook -c "EXPLAIN VERBOSE SELECT * FROM orders WHERE customer_id = 42"
-- One node: the Citus coordinator also holds the shards (add workers with citus_add_node to spread them).
-- Lines that call Citus are marked "-- citus"; tests/test_compose.py runs the others on a plain PostgreSQL.

CREATE EXTENSION IF NOT EXISTS citus;  -- citus

-- The same table as helpers.replicas.SHARD_SCHEMA: the distribution column is part of the primary key, because a
-- unique constraint can only be enforced when it includes it (Citus refuses one on order_id alone, for the reason
-- the lesson shows with postgres_fdw: no single node sees all the rows).
CREATE TABLE orders (
    order_id    bigint NOT NULL,
    customer_id bigint NOT NULL,
    ordered_at  timestamptz NOT NULL,
    total       numeric(10,2) NOT NULL,
    PRIMARY KEY (customer_id, order_id)
);

-- Hash-distributed by customer: each customer's orders live in one shard (32 by default; 8 here).
SELECT create_distributed_table('orders', 'customer_id', shard_count := 8);  -- citus

-- The lesson's seeded orders (same formula as helpers.replicas.shard_cluster: 20,000 orders of 500 customers).
INSERT INTO orders
SELECT g, 1 + (g * 7919) % 500, timestamptz '2026-01-01' + g * interval '1 minute', (1 + (g * 31) % 200)::numeric(10,2)
  FROM generate_series(1, 20000) AS g;

ANALYZE orders;
